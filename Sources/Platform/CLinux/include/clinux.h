// Linux system interfaces that Swift's Glibc overlay does not import.
//
// <sys/eventfd.h> and <sys/epoll.h> are not part of the Glibc module; memfd_create(2) is
// only declared under _GNU_SOURCE; and the CMSG_* macros that walk SCM_RIGHTS control
// messages are function-like macros. Each is made visible here, unchanged in meaning.
#ifndef CLINUX_H
#define CLINUX_H

#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <unistd.h>
#include <signal.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "clinux_net.h"
#include "clinux_memory.h"

/// memfd_create(2), called through syscall(2) so no feature macro is needed.
static inline int clinux_memfd_create(const char *name, unsigned int flags) {
    return (int)syscall(SYS_memfd_create, name, flags);
}

static const unsigned int CLINUX_MFD_CLOEXEC = 0x0001U;

/// O_NOATIME (open(2)), which <fcntl.h> names only under _GNU_SOURCE.
static const int CLINUX_O_NOATIME = __O_NOATIME;

/// CMSG_SPACE(3) for a payload of `length` bytes.
static inline size_t clinux_cmsg_space(size_t length) { return CMSG_SPACE(length); }
/// CMSG_LEN(3) for a payload of `length` bytes.
static inline size_t clinux_cmsg_len(size_t length) { return CMSG_LEN(length); }
/// CMSG_FIRSTHDR(3).
static inline struct cmsghdr *clinux_cmsg_firsthdr(struct msghdr *message) { return CMSG_FIRSTHDR(message); }
/// CMSG_NXTHDR(3).
static inline struct cmsghdr *clinux_cmsg_nxthdr(struct msghdr *message, struct cmsghdr *header) {
    return CMSG_NXTHDR(message, header);
}
/// CMSG_DATA(3).
static inline unsigned char *clinux_cmsg_data(struct cmsghdr *header) { return CMSG_DATA(header); }

/// accept4(2) with SOCK_CLOEXEC, called through syscall(2) (a GNU extension in glibc's header).
static inline int clinux_accept_cloexec(int fd) {
    return (int)syscall(SYS_accept4, fd, (void *)0, (void *)0, SOCK_CLOEXEC);
}

/// Names the calling thread (prctl PR_SET_NAME; at most 15 bytes are kept).
int clinux_set_thread_name(const char *name);

/// The host time-stamp counter (RDTSC).
static inline uint64_t clinux_rdtsc(void) {
    unsigned int low, high;
    __asm__ volatile("rdtsc" : "=a"(low), "=d"(high));
    return ((uint64_t)high << 32) | low;
}

/// The thread id (gettid(2)) of the calling thread.
static inline int clinux_gettid(void) { return (int)syscall(SYS_gettid); }

#endif
