import Glibc
import LinuxSupport
import Partition
import Synchronization

/// What every partition's creation needs that is the same for all of them, found once and kept:
/// the CPUID leaves KVM supports, and the guest images last read (checked against the file's
/// identity, size and modification time, so a rebuilt image is read again). Creating a partition
/// then costs only what is its own.
final class HostFacts: Sendable {
    /// KVM's supported CPUID leaves, asked for by the first partition created.
    let cpuid = SupportedCPUIDCache()
    /// By reader and path: an image one user could read is never handed to another from here.
    private let images = Mutex<[ImageKey: Image]>([:])

    struct ImageKey: Hashable {
        /// The user whose rights read it (nil: the root's own).
        var reader: uid_t?
        var path: String
    }

    /// The most images kept.
    static let imageLimit = 8
    /// The largest image kept (larger ones are read each time).
    static let largestCachedImage = 64 << 20

    struct Image {
        var identity: FileIdentity
        var bytes: [UInt8]
    }

    struct FileIdentity: Equatable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var modified: Int
        var modifiedNanoseconds: Int

        /// The file `descriptor` is open on.
        init?(descriptor: Int32) {
            var status = stat()
            guard fstat(descriptor, &status) == 0 else { return nil }
            self.init(status)
        }

        private init?(_ status: stat) {
            guard status.st_mode & S_IFMT == S_IFREG else { return nil }
            device = UInt64(status.st_dev)
            inode = UInt64(status.st_ino)
            size = Int64(status.st_size)
            modified = status.st_mtim.tv_sec
            modifiedNanoseconds = status.st_mtim.tv_nsec
        }
    }

    /// The bytes of the file at `path` as user `reader` reads it, from the cache while the file
    /// is unchanged and that user read it before; `read` reads the file `open` opened otherwise.
    /// `open` opens it with the reader's rights every time, cache or not, so a reader whose
    /// access was taken away since (a chmod, a group left) is refused as if nothing were cached;
    /// and what is checked, read and cached is that one open file (a path opened twice could
    /// name two files, swapped between the opens).
    func image(at path: String, reader: uid_t?, open: (String) throws(RootError) -> OwnedDescriptor,
               read: (OwnedDescriptor) throws(RootError) -> [UInt8]) throws(RootError) -> [UInt8] {
        let key = ImageKey(reader: reader, path: path)
        let opened = try open(path)
        let before = withExtendedLifetime(opened) { FileIdentity(descriptor: opened.rawValue) }
        if let before, let cached = images.withLock({ $0[key] }), cached.identity == before { return cached.bytes }
        let bytes = try read(opened)
        // Kept only if the file did not change while it was read.
        let after = withExtendedLifetime(opened) { FileIdentity(descriptor: opened.rawValue) }
        if let before, after == before, bytes.count == Int(before.size),
           bytes.count <= Self.largestCachedImage {
            images.withLock { images in
                if images[key] == nil && images.count >= Self.imageLimit { images.removeAll() }
                images[key] = Image(identity: before, bytes: bytes)
            }
        }
        return bytes
    }
}
