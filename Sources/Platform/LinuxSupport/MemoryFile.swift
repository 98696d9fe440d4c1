import CLinux
import Glibc
import SystemPackage

/// Anonymous shared memory from memfd_create(2), sized with ftruncate(2).
///
/// Guest RAM lives in one of these so the root can hand the same pages to the parent
/// partition over a Unix socket.
public enum MemoryFile {
    /// Creates a memfd named `name` of `size` bytes (zero-filled, close-on-exec).
    /// - Parameter sealed: seal its size (F_SEAL_SHRINK, F_SEAL_GROW) and then its seals
    ///   (F_SEAL_SEAL), so no process it is handed to can truncate it under the mappings of
    ///   the others (a shrunk memfd makes the next access to a page past its end raise SIGBUS:
    ///   mmap(2), "SIGBUS"; the seals are memfd_create(2)'s "File sealing").
    public static func create(name: String, size: Int, sealed: Bool = false) throws(SystemError) -> OwnedDescriptor {
        let raw = clinux_memfd_create(name, CLINUX_MFD_CLOEXEC | (sealed ? Seals.allowSealing : 0))
        guard raw >= 0 else { throw SystemError.current("memfd_create \(name)") }
        let owned = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
        _ = try retryingOnInterrupt("size memfd \(name) to \(size) bytes") { ftruncate(raw, off_t(size)) }
        if sealed {
            _ = try retryingOnInterrupt("seal the size of memfd \(name)") {
                fcntl(raw, Seals.add, Seals.shrink | Seals.grow | Seals.seal)
            }
        }
        return owned
    }

    /// The size of the file behind `descriptor` (fstat(2)).
    public static func size(of descriptor: OwnedDescriptor) throws(SystemError) -> Int {
        var info = stat()
        _ = try retryingOnInterrupt("fstat descriptor \(descriptor.rawValue)") { fstat(descriptor.rawValue, &info) }
        return Int(info.st_size)
    }

    /// The seals of a memfd (F_GET_SEALS; 0 for a file that cannot be sealed).
    public static func seals(of descriptor: OwnedDescriptor) throws(SystemError) -> Int32 {
        let result = fcntl(descriptor.rawValue, Seals.get)
        if result < 0 {
            if Errno.current == .invalidArgument { return 0 }
            throw SystemError.current("read the seals of descriptor \(descriptor.rawValue)")
        }
        return result
    }

    /// The file-sealing constants of <linux/memfd.h> and <linux/fcntl.h> (memfd_create(2), fcntl(2)).
    public enum Seals {
        static let allowSealing: UInt32 = 0x0002  // MFD_ALLOW_SEALING
        static let add: Int32 = 1024 + 9          // F_ADD_SEALS (F_LINUX_SPECIFIC_BASE + 9)
        static let get: Int32 = 1024 + 10         // F_GET_SEALS
        /// No more seals may be added.
        public static let seal: Int32 = 0x0001
        /// The file may not shrink.
        public static let shrink: Int32 = 0x0002
        /// The file may not grow.
        public static let grow: Int32 = 0x0004
    }
}
