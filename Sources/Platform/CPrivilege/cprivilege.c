// Thin wrappers: each is one system call or library call that Swift cannot make directly
// (variadic, or a raw syscall(2) that must bypass glibc's process-wide credential broadcast).
#define _GNU_SOURCE
#include "cprivilege.h"
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#else
/* Linux 5.6's uapi, for headers older than the kernel that runs this. */
struct open_how { uint64_t flags; uint64_t mode; uint64_t resolve; };
#define RESOLVE_NO_MAGICLINKS 0x02
#endif
#include <linux/capability.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/// struct landlock_path_beneath_attr.
struct cpriv_landlock_path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

int cpriv_landlock_create_ruleset(const struct cpriv_landlock_ruleset_attr *attr, size_t size, uint32_t flags) {
    return (int)syscall(SYS_landlock_create_ruleset, attr, size, flags);
}

int cpriv_landlock_add_path_rule(int ruleset, uint64_t allowed_access, int parent_fd) {
    struct cpriv_landlock_path_beneath_attr rule = { allowed_access, parent_fd };
    return (int)syscall(SYS_landlock_add_rule, ruleset, 1 /* LANDLOCK_RULE_PATH_BENEATH */, &rule, 0);
}

int cpriv_landlock_restrict_self(int ruleset) {
    return (int)syscall(SYS_landlock_restrict_self, ruleset, 0);
}

int cpriv_thread_setresuid(uid_t uid) { return (int)syscall(SYS_setresuid, uid, uid, uid); }
int cpriv_thread_setresgid(gid_t gid) { return (int)syscall(SYS_setresgid, gid, gid, gid); }
int cpriv_thread_setgroups(size_t count, const gid_t *groups) { return (int)syscall(SYS_setgroups, count, groups); }
int cpriv_thread_setfsuid(uid_t uid) { return (int)syscall(SYS_setfsuid, uid); }
int cpriv_thread_setfsgid(gid_t gid) { return (int)syscall(SYS_setfsgid, gid); }

int cpriv_prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5) {
    return prctl(option, arg2, arg3, arg4, arg5);
}

int cpriv_clear_capabilities(void) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
    return (int)syscall(SYS_capset, &header, data);
}

int cpriv_effective_capabilities(uint64_t *effective) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    int result = (int)syscall(SYS_capget, &header, data);
    if (result == 0) *effective = (uint64_t)data[0].effective | ((uint64_t)data[1].effective << 32);
    return result;
}

int cpriv_close_range(unsigned int first, unsigned int last, unsigned int flags) {
    return (int)syscall(SYS_close_range, first, last, flags);
}

int cpriv_getresuid(uid_t *real, uid_t *effective, uid_t *saved) { return getresuid(real, effective, saved); }
int cpriv_unshare(int flags) { return unshare(flags); }
int cpriv_ioctl_tiocsti(int fd) { char byte = 'x'; return ioctl(fd, TIOCSTI, &byte); }

long cpriv_ptrace_attach(pid_t pid) { return ptrace(PTRACE_ATTACH, pid, 0, 0); }

long cpriv_process_vm_read(pid_t pid, void *buffer, size_t length, uint64_t address) {
    struct iovec local = { buffer, length };
    struct iovec remote = { (void *)(uintptr_t)address, length };
    return (long)process_vm_readv(pid, &local, 1, &remote, 1, 0);
}

#ifndef __NR_openat2
#define __NR_openat2 437  /* the same number on every architecture (Linux 5.6) */
#endif

int cpriv_open_without_magic_links(const char *path, int flags) {
    struct open_how how = { .flags = (uint64_t)(unsigned int)flags, .mode = 0, .resolve = RESOLVE_NO_MAGICLINKS };
    return (int)syscall(__NR_openat2, AT_FDCWD, path, &how, sizeof how);
}

#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434  /* the same number on every architecture (Linux 5.3) */
#endif

int cpriv_pidfd_open(pid_t pid) { return (int)syscall(__NR_pidfd_open, pid, 0); }

int cpriv_peer_credentials(int socket, struct cpriv_peer_credentials *credentials) {
    struct ucred peer;
    socklen_t length = sizeof peer;
    if (getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0) return -1;
    credentials->pid = peer.pid;
    credentials->uid = peer.uid;
    credentials->gid = peer.gid;
    return 0;
}

int cpriv_seccomp_open(const char *library, struct cpriv_seccomp_api *api) {
    void *handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) return -1;
    api->init = (void *(*)(uint32_t))dlsym(handle, "seccomp_init");
    api->rule_add_array = (int (*)(void *, uint32_t, int, unsigned int, const struct cpriv_scmp_arg_cmp *))
        dlsym(handle, "seccomp_rule_add_array");
    api->attr_set = (int (*)(void *, int, uint32_t))dlsym(handle, "seccomp_attr_set");
    api->syscall_resolve_name = (int (*)(const char *))dlsym(handle, "seccomp_syscall_resolve_name");
    api->load = (int (*)(void *))dlsym(handle, "seccomp_load");
    api->release = (void (*)(void *))dlsym(handle, "seccomp_release");
    if (!api->init || !api->rule_add_array || !api->attr_set || !api->syscall_resolve_name || !api->load
        || !api->release) {
        return -1;
    }
    return 0;
}
