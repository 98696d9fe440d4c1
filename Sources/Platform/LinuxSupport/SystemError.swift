import Glibc
import SystemPackage

/// A failed Linux system call: what was being done, and the errno it failed with.
public struct SystemError: Error, Equatable, CustomStringConvertible {
    /// What the caller was doing, e.g. "create eventfd" or "connect to /run/hv/root.sock".
    public var operation: String
    /// The errno the call failed with.
    public var errno: Errno

    public init(_ operation: String, errno: Errno) {
        self.operation = operation
        self.errno = errno
    }

    /// Captures the calling thread's current errno.
    public static func current(_ operation: String) -> SystemError {
        SystemError(operation, errno: .current)
    }

    public var description: String { "\(operation) failed: \(errno) (errno \(errno.rawValue))" }
}

extension Errno {
    /// The calling thread's errno.
    public static var current: Errno { Errno(rawValue: Glibc.errno) }
}

/// Runs `body` until it stops failing with EINTR; turns any other -1 result into a `SystemError`.
@inlinable
public func retryingOnInterrupt<T: FixedWidthInteger>(
    _ operation: @autoclosure () -> String, _ body: () -> T
) throws(SystemError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let error = Errno.current
        if error == .interrupted { continue }
        throw SystemError(operation(), errno: error)
    }
}
