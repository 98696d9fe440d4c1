import CLinux
import Glibc
import SystemPackage

/// A file descriptor that is closed when the last reference goes away.
///
/// Kernel objects in this package (eventfds, memfds, KVM fds, sockets) are shared between
/// threads and handed between processes, so ownership is a reference type rather than a
/// `~Copyable` value: whoever holds an `OwnedDescriptor` may use it, and `close(2)` happens once.
public final class OwnedDescriptor: Sendable {
    /// The descriptor; valid for the lifetime of this object.
    public let descriptor: FileDescriptor

    /// Takes ownership of `descriptor`.
    public init(adopting descriptor: FileDescriptor) {
        self.descriptor = descriptor
    }

    /// The raw descriptor number.
    public var rawValue: Int32 { descriptor.rawValue }

    /// A new descriptor for the same open file (`dup(2)` with close-on-exec).
    public func duplicate() throws(SystemError) -> OwnedDescriptor {
        let raw = try retryingOnInterrupt("duplicate descriptor \(rawValue)") {
            fcntl(rawValue, F_DUPFD_CLOEXEC, 0)
        }
        return OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
    }

    deinit {
        _ = Glibc.close(descriptor.rawValue)
    }
}

/// Flags of open(2) that Swift's Glibc overlay does not import.
public enum OpenFlags {
    /// O_NOATIME: reads through the descriptor leave the file's access time alone. Only the
    /// file's owner, or a holder of CAP_FOWNER, may set it (EPERM otherwise).
    public static let noAccessTime: Int32 = CLINUX_O_NOATIME
}

extension OwnedDescriptor {
    /// Reads up to `count` bytes from offset 0 into one array, allocated once at that size (a
    /// file of gigabytes, an initrd, is not held twice on the way). Fewer come back if the file
    /// is shorter.
    public func readAll(upTo count: Int) throws(SystemError) -> [UInt8] {
        var failure: SystemError?
        let bytes = [UInt8](unsafeUninitializedCapacity: max(0, count)) { buffer, initialized in
            initialized = 0
            guard let base = buffer.baseAddress else { return }
            while initialized < buffer.count {
                // SAFETY: pread writes at most `buffer.count - initialized` bytes, all inside
                // `buffer` past the part already read; `initialized` counts only bytes it wrote.
                let read = pread(rawValue, base + initialized, buffer.count - initialized, off_t(initialized))
                if read < 0 {
                    if errno == EINTR { continue }
                    failure = SystemError.current("read")
                    return
                }
                if read == 0 { return }
                initialized += read
            }
        }
        if let failure { throw failure }
        return bytes
    }
}
