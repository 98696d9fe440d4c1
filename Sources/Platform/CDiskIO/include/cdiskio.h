// Linux file I/O interfaces that Swift's Glibc overlay does not import, for the disk back end
// (and io_uring's batched reads and writes for the virtual switch's host ports).
//
// preadv2/pwritev2 (RWF_DSYNC), fallocate (FALLOC_FL_PUNCH_HOLE), O_DIRECT, SEEK_DATA/SEEK_HOLE
// and statx's STATX_DIOALIGN are GNU or Linux extensions the Glibc module leaves out; io_uring
// has no glibc wrapper at all. This is a minimal io_uring submission/completion ring over the
// raw syscalls (io_uring_setup(2), io_uring_enter(2), io_uring_register(2)), laid out as the
// kernel's <linux/io_uring.h> and io_uring(7) describe it, with the same shared-memory ordering
// rules: the producer publishes its tail with a release store, the consumer reads the other
// side's index with an acquire load.
#ifndef CDISKIO_H
#define CDISKIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/// One io_uring instance: the descriptor and the three kernel-shared mappings.
struct cdiskio_ring {
    int fd;
    /// The setup flags the kernel accepted.
    unsigned setup_flags;
    unsigned sq_entries;
    unsigned cq_entries;
    unsigned features;
    // Submission queue (shared with the kernel).
    unsigned *sq_head;
    unsigned *sq_tail;
    unsigned *sq_mask;
    unsigned *sq_array;
    unsigned *sq_flags;
    void *sqes;
    // Completion queue (shared with the kernel).
    unsigned *cq_head;
    unsigned *cq_tail;
    unsigned *cq_mask;
    void *cqes;
    // Our tail: entries prepared but not yet published.
    unsigned sq_local_tail;
    // Mappings, for teardown.
    void *sq_ring;
    size_t sq_ring_size;
    void *cq_ring;
    size_t cq_ring_size;
    size_t sqes_size;
};

/// Sets up a ring with at least `entries` submission entries (clamped by the kernel). Returns 0
/// or -errno.
///
/// Every ring is created disabled and restricted (IORING_REGISTER_RESTRICTIONS) to READV, WRITEV,
/// FSYNC and FALLOCATE with no SQE flag but IOSQE_FIXED_FILE, and to registering an eventfd:
/// anything else completes with -EACCES. Files may be registered only before
/// `cdiskio_ring_enable`, which must be called before the first submission.
///
/// With `single_issuer`, the ring also has IORING_SETUP_SINGLE_ISSUER,
/// IORING_SETUP_DEFER_TASKRUN and IORING_SETUP_TASKRUN_FLAG (falling back to a plain ring on
/// kernels without them): completion work then runs only when the issuing thread asks for
/// events, in batches, and `cdiskio_ring_enable` must be called from that thread.
int cdiskio_ring_init(struct cdiskio_ring *ring, unsigned entries, int single_issuer);
/// Enables a ring created disabled (for a single-issuer ring, the calling thread becomes its
/// only issuer). Returns 0 or -errno.
int cdiskio_ring_enable(struct cdiskio_ring *ring);
/// Whether completions wait for `cdiskio_ring_get_events` (deferred task work is pending).
int cdiskio_ring_needs_enter(const struct cdiskio_ring *ring);
/// Runs deferred completion work without waiting. Returns 0 or -errno.
int cdiskio_ring_get_events(struct cdiskio_ring *ring);
/// Unmaps and closes the ring.
void cdiskio_ring_destroy(struct cdiskio_ring *ring);
/// Makes the kernel signal `eventfd` for every completion it posts. Returns 0 or -errno.
int cdiskio_ring_register_eventfd(struct cdiskio_ring *ring, int eventfd);
/// Registers `fd` as the ring's fixed file 0; only while the ring is still disabled (the
/// restrictions refuse it once enabled, -EACCES). Returns 0 or -errno.
int cdiskio_ring_register_file(struct cdiskio_ring *ring, int fd);
/// Free submission entries.
unsigned cdiskio_ring_space(const struct cdiskio_ring *ring);
/// Prepared entries the kernel has not consumed yet.
unsigned cdiskio_ring_unsubmitted(const struct cdiskio_ring *ring);

/// Prepares a NOP, which the ring's restrictions refuse (it completes with -EACCES); for tests.
int cdiskio_ring_prep_nop(struct cdiskio_ring *ring, uint64_t user_data);
/// Prepares a READV. Returns 0, or -EBUSY if the submission queue is full.
int cdiskio_ring_prep_readv(struct cdiskio_ring *ring, int fd, const struct iovec *iov, unsigned count,
                            uint64_t offset, uint64_t user_data);
/// Prepares a WRITEV, with RWF_DSYNC when `dsync` is non-zero. Returns 0 or -EBUSY.
int cdiskio_ring_prep_writev(struct cdiskio_ring *ring, int fd, const struct iovec *iov, unsigned count,
                             uint64_t offset, int dsync, uint64_t user_data);
/// Prepares a WRITEV with RWF_NOWAIT at the descriptor's own position, for descriptors that are
/// not files (a TAP, a packet socket): it never waits in the kernel to be retried, it completes
/// during the submission that issues it, with -EAGAIN where the write would block. With `fixed`
/// non-zero, `fd` is the index of a file registered with `cdiskio_ring_register_file` (no
/// descriptor lookup per write). Returns 0 or -EBUSY.
int cdiskio_ring_prep_write_nowait(struct cdiskio_ring *ring, int fd, int fixed, const struct iovec *iov,
                                   unsigned count, uint64_t user_data);
/// Prepares a READV with RWF_NOWAIT at the descriptor's own position, the read counterpart of
/// `cdiskio_ring_prep_write_nowait`: it completes during the submission that issues it, with
/// -EAGAIN where nothing is waiting. Returns 0 or -EBUSY.
int cdiskio_ring_prep_read_nowait(struct cdiskio_ring *ring, int fd, int fixed, const struct iovec *iov,
                                  unsigned count, uint64_t user_data);
/// Prepares an FSYNC with IORING_FSYNC_DATASYNC (fdatasync). Returns 0 or -EBUSY.
int cdiskio_ring_prep_fdatasync(struct cdiskio_ring *ring, int fd, uint64_t user_data);
/// Prepares a FALLOCATE with FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE. Returns 0 or -EBUSY.
int cdiskio_ring_prep_punch_hole(struct cdiskio_ring *ring, int fd, uint64_t offset, uint64_t length,
                                 uint64_t user_data);
/// Publishes the prepared entries and hands them to the kernel, then waits until at least
/// `wait_for` completions are posted. Returns the entries consumed or -errno.
int cdiskio_ring_submit(struct cdiskio_ring *ring, unsigned wait_for);
/// Takes the next completion, if any: returns 1 and fills `user_data` and `result` (bytes or
/// -errno), or returns 0.
int cdiskio_ring_next_completion(struct cdiskio_ring *ring, uint64_t *user_data, int32_t *result);

/// open(2) with O_CLOEXEC, O_RDWR or O_RDONLY, O_DIRECT when `direct`, O_CREAT | O_EXCL when
/// `create` (mode 0600). Returns the descriptor or -errno.
int cdiskio_open(const char *path, int writable, int direct, int create);
/// preadv(2). Returns bytes or -errno.
ssize_t cdiskio_preadv(int fd, const struct iovec *iov, int count, int64_t offset);
/// pwritev2(2) with RWF_DSYNC when `dsync` is non-zero. Returns bytes or -errno.
ssize_t cdiskio_pwritev(int fd, const struct iovec *iov, int count, int64_t offset, int dsync);
/// preadv2(2) or pwritev2(2) with RWF_NOWAIT: only what the page cache can take or give without
/// blocking. Returns bytes (possibly short) or -errno (-EAGAIN when nothing could be done at once).
ssize_t cdiskio_transfer_nowait(int fd, const struct iovec *iov, int count, int64_t offset, int write);
/// fallocate(2) with FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE. Returns 0 or -errno.
int cdiskio_punch_hole(int fd, int64_t offset, int64_t length);
/// Whether `fd`'s file system is served over a network or by a user-space program (NFS, SMB,
/// Ceph, 9P, AFS, FUSE), as fstatfs(2) names it: 1 or 0, or -errno.
int cdiskio_is_remote_file_system(int fd);
/// lseek(2) with SEEK_DATA (`hole` = 0) or SEEK_HOLE (`hole` = 1). Returns the offset or -errno
/// (-ENXIO past the last data).
int64_t cdiskio_seek(int fd, int64_t offset, int hole);
/// statx(2) STATX_DIOALIGN: the memory and file-offset alignment O_DIRECT needs, or zeros if the
/// file system does not report them. Returns 0 or -errno.
int cdiskio_direct_io_alignment(int fd, uint32_t *memory_alignment, uint32_t *offset_alignment);
/// Sets or clears O_DIRECT on an open file description (fcntl(2) F_SETFL), for descriptors
/// opened elsewhere. Returns 0 or -errno (EINVAL where the file system refuses O_DIRECT).
int cdiskio_set_direct(int fd, int direct);
/// The access mode of an open descriptor: 0 read-only, 1 read-write (or write-only), or -errno.
int cdiskio_writable(int fd);
/// A block device's size in bytes (ioctl(2) BLKGETSIZE64). Returns 0 or -errno.
int cdiskio_block_device_size(int fd, uint64_t *bytes);

#endif
