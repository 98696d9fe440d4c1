import CDiskIO
import Glibc
import GuestMemory
import LinuxSupport
import Synchronization
import SystemPackage

/// A raw disk image in a regular file (sparse where the file system allows), opened once and
/// shared by every channel queue of a device.
///
/// Buffered I/O goes through one descriptor; with `direct`, a second O_DIRECT descriptor serves
/// requests aligned as the file system requires (STATX_DIOALIGN), and the rest fall back to the
/// buffered one, which the kernel keeps coherent with it.
public final class DiskImage: Sendable {
    /// How the image is opened.
    public enum Access: Sendable {
        case readOnly
        case readWrite
    }

    public let path: String
    /// The image size in bytes (fixed while open).
    public let size: UInt64
    public let isReadOnly: Bool
    /// Whether O_DIRECT is in use.
    public let isDirect: Bool
    /// The alignment (bytes) of offsets, lengths and memory for O_DIRECT requests.
    public let directAlignment: Int
    /// Whether fallocate(PUNCH_HOLE) works on this file system.
    public let supportsPunchHole: Bool
    /// Whether the file system is served over a network or by a user-space program (NFS, SMB,
    /// Ceph, 9P, AFS, FUSE), or the image is a block device, which may be too (NBD, RBD, iSCSI,
    /// a multipath map that queues while its paths are down) without anything here being able
    /// to tell: a write into its page cache can wait on that server for as long as the server
    /// takes, so a queue never blocks its own thread on a write to it (`DiskQueue`).
    public let isRemote: Bool
    let buffered: OwnedDescriptor
    let direct: OwnedDescriptor?
    /// The errno of the first failed data sync, latched: after fdatasync reports a lost
    /// write-back, a later fdatasync may succeed although the data is gone, so every later
    /// flush fails as well.
    let syncFailure = Atomic<Int32>(0)
    /// The data syncs in flight on `buffered`, from every queue of the image and `dataSync`.
    public let syncs = SyncLedger()

    /// Creates a new image file of `size` bytes (sparse: ftruncate allocates nothing) and opens
    /// it read-write. Fails if the file exists.
    public static func create(at path: String, size: UInt64, direct: Bool = false) throws(SystemError) -> DiskImage {
        guard size > 0, size <= UInt64(Int64.max) else {
            throw SystemError("create disk image \(path) of \(size) bytes", errno: .invalidArgument)
        }
        let raw = cdiskio_open(path, 1, 0, 1)
        guard raw >= 0 else { throw SystemError("create disk image \(path)", errno: Errno(rawValue: -raw)) }
        let file = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
        _ = try retryingOnInterrupt("size disk image \(path) to \(size) bytes") { ftruncate(file.rawValue, off_t(size)) }
        return try DiskImage(path: path, access: .readWrite, direct: direct)
    }

    /// Opens an existing image.
    /// - Throws: if the file cannot be opened, is not a regular file, is empty, or (with
    ///   `direct`) its file system refuses O_DIRECT.
    public convenience init(path: String, access: Access = .readWrite, direct: Bool = false) throws(SystemError) {
        let writable: Int32 = access == .readWrite ? 1 : 0
        let raw = cdiskio_open(path, writable, 0, 0)
        guard raw >= 0 else { throw SystemError("open disk image \(path)", errno: Errno(rawValue: -raw)) }
        let buffered = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
        var directDescriptor: OwnedDescriptor?
        if direct {
            let directRaw = cdiskio_open(path, writable, 1, 0)
            guard directRaw >= 0 else {
                throw SystemError("open disk image \(path) with O_DIRECT", errno: Errno(rawValue: -directRaw))
            }
            directDescriptor = OwnedDescriptor(adopting: FileDescriptor(rawValue: directRaw))
        }
        try self.init(adopting: buffered, direct: directDescriptor, name: path, access: access)
    }

    /// Adopts descriptors someone else opened (the root scheduler opens a device's files and hands
    /// the parent their descriptors, so the parent never opens a host path).
    /// - Parameters:
    ///   - buffered: the image, opened for reading, and for writing unless `access` is read-only.
    ///   - direct: with O_DIRECT wanted, a second open of the same file (its own open file
    ///     description, so that setting O_DIRECT on it leaves `buffered` alone); O_DIRECT is set here.
    ///   - name: what errors and logs call the image (its path, as the configuration gave it).
    /// - Throws: if a descriptor is neither a regular file nor a block device, the image is empty, a read-write image was
    ///   opened read-only, or the file system refuses O_DIRECT.
    public init(adopting buffered: OwnedDescriptor, direct: OwnedDescriptor? = nil, name: String,
                access: Access = .readWrite) throws(SystemError) {
        var info = stat()
        _ = try retryingOnInterrupt("fstat disk image \(name)") { fstat(buffered.rawValue, &info) }
        // A regular file's size is st_size; a block device (a partition, an LVM volume) says its
        // own with BLKGETSIZE64 (its st_size is 0).
        var bytes = UInt64(max(0, info.st_size))
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            break
        case S_IFBLK:
            let result = cdiskio_block_device_size(buffered.rawValue, &bytes)
            guard result == 0 else { throw SystemError("read the size of block device \(name)", errno: Errno(rawValue: -result)) }
        default:
            throw SystemError("use \(name) as a disk image: not a regular file or a block device", errno: .invalidArgument)
        }
        guard bytes > 0 else { throw SystemError("use \(name) as a disk image: it is empty", errno: .invalidArgument) }
        for descriptor in [buffered] + (direct.map { [$0] } ?? []) where access == .readWrite {
            let writable = cdiskio_writable(descriptor.rawValue)
            guard writable >= 0 else { throw SystemError("read the access mode of \(name)", errno: Errno(rawValue: -writable)) }
            guard writable == 1 else {
                throw SystemError("use \(name) as a writable disk image: it was opened read-only", errno: .badFileDescriptor)
            }
        }
        path = name
        size = bytes
        isReadOnly = access == .readOnly
        self.buffered = buffered
        if let direct {
            let result = cdiskio_set_direct(direct.rawValue, 1)
            guard result == 0 else { throw SystemError("use \(name) with O_DIRECT", errno: Errno(rawValue: -result)) }
            var memory: UInt32 = 0
            var offset: UInt32 = 0
            let aligned = cdiskio_direct_io_alignment(direct.rawValue, &memory, &offset)
            // Without STATX_DIOALIGN, a page is an alignment every file system accepts.
            directAlignment = aligned == 0 && memory > 0 && offset > 0 ? Int(max(memory, offset)) : 4096
        } else {
            directAlignment = 1
        }
        self.direct = direct
        isDirect = direct != nil
        // Punching a hole past the end of the file changes nothing and tells whether the file
        // system supports it.
        supportsPunchHole = access == .readWrite && cdiskio_punch_hole(buffered.rawValue, Int64(size), 4096) == 0
        // Where fstatfs fails, the queue keeps its writes off its own thread, as for a remote one.
        // A device node's file system is devtmpfs, whatever serves the device.
        isRemote = info.st_mode & S_IFMT == S_IFBLK || cdiskio_is_remote_file_system(buffered.rawValue) != 0
    }

    /// The descriptor for a transfer: the O_DIRECT one if the offset and every buffer range
    /// meet its alignment, the buffered one otherwise. Guest RAM is mapped page-aligned, so a
    /// guest-physical address has the same alignment (up to a page) as its host address.
    func descriptor(offset: UInt64, buffers: GuestIOVectors) -> Int32 {
        guard let direct else { return buffered.rawValue }
        let aligned = offset % UInt64(directAlignment) == 0 && buffers.isAligned(to: directAlignment)
        return aligned ? direct.rawValue : buffered.rawValue
    }

    /// Bytes the file occupies on disk (st_blocks × 512).
    public func allocatedBytes() throws(SystemError) -> UInt64 {
        var info = stat()
        _ = try retryingOnInterrupt("fstat disk image \(path)") { fstat(buffered.rawValue, &info) }
        return UInt64(info.st_blocks) * 512
    }

    /// Whether any byte in `offset..<offset + length` is in a hole (SEEK_HOLE).
    public func containsHole(offset: UInt64, length: UInt64) throws(SystemError) -> Bool {
        let hole = cdiskio_seek(buffered.rawValue, Int64(offset), 1)
        guard hole >= 0 else { throw SystemError("seek to a hole in \(path)", errno: Errno(rawValue: Int32(-hole))) }
        return UInt64(hole) < offset + length
    }

    /// The first data at or after `offset` (SEEK_DATA), or `nil` if only holes follow.
    public func nextData(from offset: UInt64) throws(SystemError) -> UInt64? {
        let data = cdiskio_seek(buffered.rawValue, Int64(offset), 0)
        if data == -Int64(ENXIO) { return nil }
        guard data >= 0 else { throw SystemError("seek to data in \(path)", errno: Errno(rawValue: Int32(-data))) }
        return UInt64(data)
    }
}
