// See include/cdiskio.h. Everything here is a thin wrapper: the io_uring functions follow the
// ring protocol of io_uring(7) and <linux/io_uring.h> (liburing implements the same).
#define _GNU_SOURCE
#include "cdiskio.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <linux/stat.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sys_setup(unsigned entries, struct io_uring_params *params) {
    return (int)syscall(__NR_io_uring_setup, entries, params);
}

static int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
    return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, NULL, 0);
}

static int sys_register(int fd, unsigned opcode, const void *arg, unsigned count) {
    return (int)syscall(__NR_io_uring_register, fd, opcode, arg, count);
}

/// Limits the ring, while it is still disabled, to the operations a disk queue issues (READV,
/// WRITEV, FSYNC, FALLOCATE), with no SQE flag but IOSQE_FIXED_FILE, and once enabled to
/// registering an eventfd: io_uring runs its operations past the seccomp filter, so a ring that
/// could OPENAT, CONNECT or SOCKET would be a way around the parent's sandbox (io_uring_register(2),
/// IORING_REGISTER_RESTRICTIONS). A fixed file can only name a descriptor registered before the
/// ring was enabled (`cdiskio_ring_register_file`), one the parent already held.
static int restrict_ring(int fd) {
    static const uint8_t operations[] = {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC, IORING_OP_FALLOCATE};
    struct io_uring_restriction restrictions[6];
    memset(restrictions, 0, sizeof(restrictions));
    for (unsigned i = 0; i < 4; i++) {
        restrictions[i].opcode = IORING_RESTRICTION_SQE_OP;
        restrictions[i].sqe_op = operations[i];
    }
    restrictions[4].opcode = IORING_RESTRICTION_REGISTER_OP;
    restrictions[4].register_op = IORING_REGISTER_EVENTFD;
    restrictions[5].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
    restrictions[5].sqe_flags = IOSQE_FIXED_FILE;
    return sys_register(fd, IORING_REGISTER_RESTRICTIONS, restrictions, 6) < 0 ? -errno : 0;
}

int cdiskio_ring_init(struct cdiskio_ring *ring, unsigned entries, int single_issuer) {
    memset(ring, 0, sizeof(*ring));
    ring->fd = -1;
    struct io_uring_params params;
    memset(&params, 0, sizeof(params));
    // Every ring starts disabled, so that its restrictions are in place before it runs anything.
    params.flags = IORING_SETUP_CLAMP | IORING_SETUP_R_DISABLED;
    if (single_issuer)
        params.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    int fd = sys_setup(entries, &params);
    if (fd < 0 && errno == EINVAL && single_issuer) {
        // Older kernels (before 6.1) lack these flags: a plain ring works the same, less batched.
        memset(&params, 0, sizeof(params));
        params.flags = IORING_SETUP_CLAMP | IORING_SETUP_R_DISABLED;
        fd = sys_setup(entries, &params);
    }
    if (fd < 0) return -errno;
    int restricted = restrict_ring(fd);
    if (restricted < 0) {
        close(fd);
        return restricted;
    }
    ring->fd = fd;
    ring->setup_flags = params.flags;
    ring->sq_entries = params.sq_entries;
    ring->cq_entries = params.cq_entries;
    ring->features = params.features;

    ring->sq_ring_size = params.sq_off.array + params.sq_entries * sizeof(unsigned);
    ring->cq_ring_size = params.cq_off.cqes + params.cq_entries * sizeof(struct io_uring_cqe);
    if (params.features & IORING_FEAT_SINGLE_MMAP) {
        if (ring->cq_ring_size > ring->sq_ring_size) ring->sq_ring_size = ring->cq_ring_size;
        ring->cq_ring_size = ring->sq_ring_size;
    }
    ring->sq_ring = mmap(NULL, ring->sq_ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                         IORING_OFF_SQ_RING);
    if (ring->sq_ring == MAP_FAILED) goto fail;
    if (params.features & IORING_FEAT_SINGLE_MMAP) {
        ring->cq_ring = ring->sq_ring;
    } else {
        ring->cq_ring = mmap(NULL, ring->cq_ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                             IORING_OFF_CQ_RING);
        if (ring->cq_ring == MAP_FAILED) {
            ring->cq_ring = NULL;
            goto fail;
        }
    }
    ring->sqes_size = params.sq_entries * sizeof(struct io_uring_sqe);
    ring->sqes = mmap(NULL, ring->sqes_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (ring->sqes == MAP_FAILED) {
        ring->sqes = NULL;
        goto fail;
    }

    char *sq = ring->sq_ring;
    ring->sq_head = (unsigned *)(sq + params.sq_off.head);
    ring->sq_tail = (unsigned *)(sq + params.sq_off.tail);
    ring->sq_mask = (unsigned *)(sq + params.sq_off.ring_mask);
    ring->sq_array = (unsigned *)(sq + params.sq_off.array);
    ring->sq_flags = (unsigned *)(sq + params.sq_off.flags);
    char *cq = ring->cq_ring;
    ring->cq_head = (unsigned *)(cq + params.cq_off.head);
    ring->cq_tail = (unsigned *)(cq + params.cq_off.tail);
    ring->cq_mask = (unsigned *)(cq + params.cq_off.ring_mask);
    ring->cqes = cq + params.cq_off.cqes;
    // Submission slot i always names SQE i; entries are used in ring order.
    for (unsigned i = 0; i < params.sq_entries; i++) ring->sq_array[i] = i;
    ring->sq_local_tail = __atomic_load_n(ring->sq_tail, __ATOMIC_RELAXED);
    return 0;

fail: {
        int error = errno;
        cdiskio_ring_destroy(ring);
        return -error;
    }
}

void cdiskio_ring_destroy(struct cdiskio_ring *ring) {
    if (ring->sqes) munmap(ring->sqes, ring->sqes_size);
    if (ring->cq_ring && ring->cq_ring != ring->sq_ring && ring->cq_ring != MAP_FAILED) munmap(ring->cq_ring, ring->cq_ring_size);
    if (ring->sq_ring && ring->sq_ring != MAP_FAILED) munmap(ring->sq_ring, ring->sq_ring_size);
    if (ring->fd >= 0) close(ring->fd);
    memset(ring, 0, sizeof(*ring));
    ring->fd = -1;
}

int cdiskio_ring_enable(struct cdiskio_ring *ring) {
    if (!(ring->setup_flags & IORING_SETUP_R_DISABLED)) return 0;
    if (sys_register(ring->fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0) return -errno;
    ring->setup_flags &= ~IORING_SETUP_R_DISABLED;
    return 0;
}

int cdiskio_ring_needs_enter(const struct cdiskio_ring *ring) {
    if (!(ring->setup_flags & IORING_SETUP_DEFER_TASKRUN)) return 0;
    return (__atomic_load_n(ring->sq_flags, __ATOMIC_ACQUIRE) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) != 0;
}

int cdiskio_ring_get_events(struct cdiskio_ring *ring) {
    int result;
    do {
        result = sys_enter(ring->fd, 0, 0, IORING_ENTER_GETEVENTS);
    } while (result < 0 && errno == EINTR);
    return result < 0 ? -errno : 0;
}

int cdiskio_ring_register_eventfd(struct cdiskio_ring *ring, int eventfd) {
    return sys_register(ring->fd, IORING_REGISTER_EVENTFD, &eventfd, 1) < 0 ? -errno : 0;
}

int cdiskio_ring_register_file(struct cdiskio_ring *ring, int fd) {
    // Once the ring is enabled, its restrictions refuse this (-EACCES).
    return sys_register(ring->fd, IORING_REGISTER_FILES, &fd, 1) < 0 ? -errno : 0;
}

unsigned cdiskio_ring_space(const struct cdiskio_ring *ring) {
    unsigned head = __atomic_load_n(ring->sq_head, __ATOMIC_ACQUIRE);
    return ring->sq_entries - (ring->sq_local_tail - head);
}

unsigned cdiskio_ring_unsubmitted(const struct cdiskio_ring *ring) {
    return ring->sq_local_tail - __atomic_load_n(ring->sq_head, __ATOMIC_ACQUIRE);
}

/// The next free submission entry, zeroed, or NULL when the queue is full.
static struct io_uring_sqe *next_sqe(struct cdiskio_ring *ring) {
    if (cdiskio_ring_space(ring) == 0) return NULL;
    struct io_uring_sqe *sqe = (struct io_uring_sqe *)ring->sqes + (ring->sq_local_tail & *ring->sq_mask);
    memset(sqe, 0, sizeof(*sqe));
    return sqe;
}

static void commit_sqe(struct cdiskio_ring *ring) { ring->sq_local_tail++; }

int cdiskio_ring_prep_nop(struct cdiskio_ring *ring, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(ring);
    if (!sqe) return -EBUSY;
    sqe->opcode = IORING_OP_NOP;
    sqe->user_data = user_data;
    commit_sqe(ring);
    return 0;
}

/// A READV or WRITEV entry: `rw_flags` as preadv2(2)/pwritev2(2) take them.
/// With `fixed`, `fd` is an index into the ring's registered files (IOSQE_FIXED_FILE).
static int prep_rw(struct cdiskio_ring *ring, uint8_t opcode, int fd, int fixed, const struct iovec *iov,
                   unsigned count, uint64_t offset, int rw_flags, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(ring);
    if (!sqe) return -EBUSY;
    sqe->opcode = opcode;
    sqe->flags = fixed ? IOSQE_FIXED_FILE : 0;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)iov;
    sqe->len = count;
    sqe->off = offset;
    sqe->rw_flags = rw_flags;
    sqe->user_data = user_data;
    commit_sqe(ring);
    return 0;
}

int cdiskio_ring_prep_readv(struct cdiskio_ring *ring, int fd, const struct iovec *iov, unsigned count,
                            uint64_t offset, uint64_t user_data) {
    return prep_rw(ring, IORING_OP_READV, fd, 0, iov, count, offset, 0, user_data);
}

int cdiskio_ring_prep_writev(struct cdiskio_ring *ring, int fd, const struct iovec *iov, unsigned count,
                             uint64_t offset, int dsync, uint64_t user_data) {
    return prep_rw(ring, IORING_OP_WRITEV, fd, 0, iov, count, offset, dsync ? RWF_DSYNC : 0, user_data);
}

int cdiskio_ring_prep_write_nowait(struct cdiskio_ring *ring, int fd, int fixed, const struct iovec *iov,
                                   unsigned count, uint64_t user_data) {
    // -1: the file's own position, which a stream (TAP, socket) ignores (io_uring_enter(2)).
    return prep_rw(ring, IORING_OP_WRITEV, fd, fixed, iov, count, (uint64_t)-1, RWF_NOWAIT, user_data);
}

int cdiskio_ring_prep_read_nowait(struct cdiskio_ring *ring, int fd, int fixed, const struct iovec *iov,
                                  unsigned count, uint64_t user_data) {
    return prep_rw(ring, IORING_OP_READV, fd, fixed, iov, count, (uint64_t)-1, RWF_NOWAIT, user_data);
}

int cdiskio_ring_prep_fdatasync(struct cdiskio_ring *ring, int fd, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(ring);
    if (!sqe) return -EBUSY;
    sqe->opcode = IORING_OP_FSYNC;
    sqe->fd = fd;
    sqe->fsync_flags = IORING_FSYNC_DATASYNC;
    sqe->user_data = user_data;
    commit_sqe(ring);
    return 0;
}

int cdiskio_ring_prep_punch_hole(struct cdiskio_ring *ring, int fd, uint64_t offset, uint64_t length,
                                 uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(ring);
    if (!sqe) return -EBUSY;
    // IORING_OP_FALLOCATE: offset in off, length in addr, mode in len (io_uring_prep_fallocate).
    sqe->opcode = IORING_OP_FALLOCATE;
    sqe->fd = fd;
    sqe->off = offset;
    sqe->addr = length;
    sqe->len = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    sqe->user_data = user_data;
    commit_sqe(ring);
    return 0;
}

int cdiskio_ring_submit(struct cdiskio_ring *ring, unsigned wait_for) {
    // Publish the prepared entries: their contents before the new tail.
    __atomic_store_n(ring->sq_tail, ring->sq_local_tail, __ATOMIC_RELEASE);
    unsigned pending = cdiskio_ring_unsubmitted(ring);
    // A deferred-task-run ring posts completions only when asked for events: ask on every
    // submission, so one system call both submits and collects.
    int deferred = (ring->setup_flags & IORING_SETUP_DEFER_TASKRUN) != 0;
    if (pending == 0 && wait_for == 0 && !(deferred && cdiskio_ring_needs_enter(ring))) return 0;
    unsigned flags = (wait_for || deferred) ? IORING_ENTER_GETEVENTS : 0;
    int consumed;
    do {
        consumed = sys_enter(ring->fd, pending, wait_for, flags);
    } while (consumed < 0 && errno == EINTR);
    return consumed < 0 ? -errno : consumed;
}

int cdiskio_ring_next_completion(struct cdiskio_ring *ring, uint64_t *user_data, int32_t *result) {
    unsigned head = __atomic_load_n(ring->cq_head, __ATOMIC_RELAXED);
    unsigned tail = __atomic_load_n(ring->cq_tail, __ATOMIC_ACQUIRE);
    if (head == tail) return 0;
    const struct io_uring_cqe *cqe = (const struct io_uring_cqe *)ring->cqes + (head & *ring->cq_mask);
    *user_data = cqe->user_data;
    *result = cqe->res;
    // Hand the entry back only after reading it.
    __atomic_store_n(ring->cq_head, head + 1, __ATOMIC_RELEASE);
    return 1;
}

int cdiskio_open(const char *path, int writable, int direct, int create) {
    int flags = O_CLOEXEC | (writable ? O_RDWR : O_RDONLY) | (direct ? O_DIRECT : 0) | (create ? O_CREAT | O_EXCL : 0);
    int fd;
    do {
        fd = open(path, flags, 0600);
    } while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

ssize_t cdiskio_preadv(int fd, const struct iovec *iov, int count, int64_t offset) {
    ssize_t done = preadv(fd, iov, count, (off_t)offset);
    return done < 0 ? -errno : done;
}

/// preadv2(2) or pwritev2(2) as the system call itself. glibc's wrappers are cancellation
/// points: each call also switches asynchronous cancellation on and off around the system call,
/// which showed in a profile of the storage worker's page-cache reads, and this package never
/// cancels a thread. On a 64-bit kernel the offset is the low word and the high word is 0
/// (`pos_from_hilo` in fs/read_write.c), as glibc passes them. Where the system call is missing
/// (ENOSYS: an old kernel, or a seccomp filter answering so), glibc's wrappers are used, which
/// fall back to preadv(2)/pwritev(2) without flags and report EOPNOTSUPP with them.
static ssize_t transfer2(int fd, const struct iovec *iov, int count, int64_t offset, int writing, int flags) {
    long done = -1;
    errno = ENOSYS;
#if __SIZEOF_LONG__ == 8
    done = syscall(writing ? SYS_pwritev2 : SYS_preadv2, (long)fd, iov, (long)count, (long)offset, 0L, (long)flags);
#endif
    if (done < 0 && errno == ENOSYS) {
        done = writing ? pwritev2(fd, iov, count, (off_t)offset, flags) : preadv2(fd, iov, count, (off_t)offset, flags);
    }
    return done < 0 ? -errno : (ssize_t)done;
}

ssize_t cdiskio_pwritev(int fd, const struct iovec *iov, int count, int64_t offset, int dsync) {
    return transfer2(fd, iov, count, offset, 1, dsync ? RWF_DSYNC : 0);
}

ssize_t cdiskio_transfer_nowait(int fd, const struct iovec *iov, int count, int64_t offset, int write) {
    return transfer2(fd, iov, count, offset, write, RWF_NOWAIT);
}

int cdiskio_punch_hole(int fd, int64_t offset, int64_t length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) < 0 ? -errno : 0;
}

int64_t cdiskio_seek(int fd, int64_t offset, int hole) {
    off_t position = lseek(fd, (off_t)offset, hole ? SEEK_HOLE : SEEK_DATA);
    return position < 0 ? -errno : (int64_t)position;
}

int cdiskio_direct_io_alignment(int fd, uint32_t *memory_alignment, uint32_t *offset_alignment) {
    struct statx info;
    memset(&info, 0, sizeof(info));
    *memory_alignment = 0;
    *offset_alignment = 0;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &info) < 0) return -errno;
    if (info.stx_mask & STATX_DIOALIGN) {
        *memory_alignment = info.stx_dio_mem_align;
        *offset_alignment = info.stx_dio_offset_align;
    }
    return 0;
}

int cdiskio_set_direct(int fd, int direct) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    flags = direct ? (flags | O_DIRECT) : (flags & ~O_DIRECT);
    if (fcntl(fd, F_SETFL, flags) < 0) return -errno;
    return 0;
}

int cdiskio_writable(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    return (flags & O_ACCMODE) == O_RDONLY ? 0 : 1;
}

int cdiskio_block_device_size(int fd, uint64_t *bytes) {
    return ioctl(fd, BLKGETSIZE64, bytes) < 0 ? -errno : 0;
}

int cdiskio_is_remote_file_system(int fd) {
    struct statfs info;
    if (fstatfs(fd, &info) != 0) return -errno;
    // The f_type values of statfs(2) (linux/magic.h and the file systems' own sources).
    static const unsigned long remote[] = {
        0x6969,     // NFS
        0xFF534D42, // CIFS
        0xFE534D42, // SMB2
        0x517B,     // SMB
        0x00C36400, // Ceph
        0x01021997, // 9P (v9fs)
        0x5346414F, // AFS (OpenAFS)
        0x6B414653, // AFS (kAFS)
        0x65735546, // FUSE (sshfs, GlusterFS, ...)
        0x73757245, // Coda
    };
    for (size_t i = 0; i < sizeof(remote) / sizeof(remote[0]); i++) {
        if ((unsigned long)info.f_type == remote[i]) return 1;
    }
    return 0;
}
