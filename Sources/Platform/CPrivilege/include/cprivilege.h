// Linux interfaces the least-privilege code needs that Swift's Glibc overlay does not import:
// Landlock (Documentation/userspace-api/landlock.rst), raw per-thread credential system calls,
// capability sets, peer credentials, variadic prctl(2)/ptrace(2), and the few libseccomp
// entry points the parent's system-call filter uses, reached with dlopen(3) so that building
// hv needs no libseccomp headers. Declarations only, plus one-line wrappers; no logic.
#ifndef CPRIVILEGE_H
#define CPRIVILEGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

// MARK: Landlock (include/uapi/linux/landlock.h; the host's headers may predate ABI 4-6)

/// struct landlock_ruleset_attr, ABI 6 layout; older kernels take a prefix of it.
struct cpriv_landlock_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

/// landlock_create_ruleset(2); with attr NULL, size 0 and flags 1 it returns the ABI version.
int cpriv_landlock_create_ruleset(const struct cpriv_landlock_ruleset_attr *attr, size_t size, uint32_t flags);
/// landlock_add_rule(2) with LANDLOCK_RULE_PATH_BENEATH.
int cpriv_landlock_add_path_rule(int ruleset, uint64_t allowed_access, int parent_fd);
/// landlock_restrict_self(2) for the calling thread.
int cpriv_landlock_restrict_self(int ruleset);

// MARK: Credentials of the calling thread only (raw system calls: glibc's wrappers of
// setresuid/setresgid/setgroups change every thread of the process)

int cpriv_thread_setresuid(uid_t uid);
int cpriv_thread_setresgid(gid_t gid);
int cpriv_thread_setgroups(size_t count, const gid_t *groups);
/// setfsuid(2)/setfsgid(2): return the previous value (they cannot report failure).
int cpriv_thread_setfsuid(uid_t uid);
int cpriv_thread_setfsgid(gid_t gid);

// MARK: Process-wide privileges

// Constants of <linux/prctl.h>, <fcntl.h> and <linux/sched.h> that need _GNU_SOURCE or are
// newer than the host's headers (the values are the kernel's ABI).
static const int CPRIV_PR_GET_DUMPABLE = 3;
static const int CPRIV_PR_SET_DUMPABLE = 4;
static const int CPRIV_PR_SET_NAME = 15;
static const int CPRIV_PR_GET_NAME = 16;
static const int CPRIV_PR_GET_SECCOMP = 21;
static const int CPRIV_PR_CAPBSET_READ = 23;
static const int CPRIV_PR_CAPBSET_DROP = 24;
static const int CPRIV_PR_SET_NO_NEW_PRIVS = 38;
static const int CPRIV_PR_GET_NO_NEW_PRIVS = 39;
static const int CPRIV_PR_CAP_AMBIENT = 47;
static const int CPRIV_PR_CAP_AMBIENT_CLEAR_ALL = 4;
static const int CPRIV_PR_SET_VMA = 0x53564d41;
static const int CPRIV_O_PATH = 010000000;
static const unsigned long CPRIV_CLONE_THREAD = 0x00010000UL;
static const int CPRIV_CLONE_NEWUSER = 0x10000000;
static const int CPRIV_CLONE_NEWNET = 0x40000000;

/// getresuid(2) of the calling thread.
int cpriv_getresuid(uid_t *real, uid_t *effective, uid_t *saved);
/// ioctl(fd, TIOCSTI, "x"): pushes a byte into a terminal's input (ioctl is variadic).
int cpriv_ioctl_tiocsti(int fd);
/// unshare(2).
int cpriv_unshare(int flags);

/// prctl(2), which is variadic in glibc.
int cpriv_prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5);
/// capset(2) with every set of the calling thread emptied (_LINUX_CAPABILITY_VERSION_3).
int cpriv_clear_capabilities(void);
/// The effective capability set of the calling thread (capget(2)), 64 bits.
int cpriv_effective_capabilities(uint64_t *effective);
/// close_range(2).
int cpriv_close_range(unsigned int first, unsigned int last, unsigned int flags);
/// ptrace(PTRACE_ATTACH, pid) (ptrace is variadic in glibc).
long cpriv_ptrace_attach(pid_t pid);
/// process_vm_readv(2) of `length` bytes at `address` in `pid` into `buffer`.
long cpriv_process_vm_read(pid_t pid, void *buffer, size_t length, uint64_t address);

/// openat2(2) of `path` relative to the working directory with `flags` (mode 0) that refuses to
/// follow procfs magic links (RESOLVE_NO_MAGICLINKS); -1 and errno on failure (ENOSYS before
/// Linux 5.6).
int cpriv_open_without_magic_links(const char *path, int flags);

/// pidfd_open(2): a descriptor for process `pid` that becomes readable when it exits; -1 and errno on failure.
int cpriv_pidfd_open(pid_t pid);

/// The peer of a connected Unix socket (SO_PEERCRED).
struct cpriv_peer_credentials {
    int32_t pid;
    uint32_t uid;
    uint32_t gid;
};
int cpriv_peer_credentials(int socket, struct cpriv_peer_credentials *credentials);

// MARK: libseccomp, through dlopen (seccomp.h of libseccomp 2.5)

/// struct scmp_arg_cmp.
struct cpriv_scmp_arg_cmp {
    unsigned int arg;
    int op;
    uint64_t datum_a;
    uint64_t datum_b;
};

/// The libseccomp functions the filter uses.
struct cpriv_seccomp_api {
    void *(*init)(uint32_t default_action);
    int (*rule_add_array)(void *context, uint32_t action, int syscall, unsigned int count,
                          const struct cpriv_scmp_arg_cmp *comparisons);
    int (*attr_set)(void *context, int attribute, uint32_t value);
    int (*syscall_resolve_name)(const char *name);
    int (*load)(void *context);
    void (*release)(void *context);
};

/// Loads `library` (e.g. "libseccomp.so.2") and fills `api`; 0 on success, -1 if the library or
/// a symbol is missing.
int cpriv_seccomp_open(const char *library, struct cpriv_seccomp_api *api);

#endif
