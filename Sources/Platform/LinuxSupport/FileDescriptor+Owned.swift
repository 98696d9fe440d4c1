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
