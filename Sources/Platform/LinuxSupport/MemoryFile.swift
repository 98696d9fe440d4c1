import CLinux
import Glibc
import SystemPackage

/// Anonymous shared memory from memfd_create(2), sized with ftruncate(2).
///
/// Guest RAM lives in one of these so the root can hand the same pages to the parent
/// partition over a Unix socket.
public enum MemoryFile {
    /// Creates a memfd named `name` of `size` bytes (zero-filled, close-on-exec).
    public static func create(name: String, size: Int) throws(SystemError) -> OwnedDescriptor {
        let raw = clinux_memfd_create(name, CLINUX_MFD_CLOEXEC)
        guard raw >= 0 else { throw SystemError.current("memfd_create \(name)") }
        let owned = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
        _ = try retryingOnInterrupt("size memfd \(name) to \(size) bytes") { ftruncate(raw, off_t(size)) }
        return owned
    }

    /// The size of the file behind `descriptor` (fstat(2)).
    public static func size(of descriptor: OwnedDescriptor) throws(SystemError) -> Int {
        var info = stat()
        _ = try retryingOnInterrupt("fstat descriptor \(descriptor.rawValue)") { fstat(descriptor.rawValue, &info) }
        return Int(info.st_size)
    }
}
