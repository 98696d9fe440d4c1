import CLinux
import Glibc
import SystemPackage

/// An eventfd(2): a 64-bit counter the kernel can signal (ioeventfd) or be signalled
/// through (irqfd), and that threads and processes wait on.
public final class EventFD: Sendable {
    /// The owned descriptor.
    public let owned: OwnedDescriptor

    /// Creates a counter starting at zero.
    /// - Parameter nonBlocking: writes that would overflow the counter fail at once instead of
    ///   waiting for a reader (for an eventfd no other process may read or write).
    public init(nonBlocking: Bool = false) throws(SystemError) {
        let raw = eventfd(0, Int32(EFD_CLOEXEC) | (nonBlocking ? Int32(EFD_NONBLOCK) : 0))
        guard raw >= 0 else { throw SystemError.current("create eventfd") }
        owned = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
    }

    /// Wraps an eventfd received from another process.
    public init(adopting owned: OwnedDescriptor) {
        self.owned = owned
    }

    /// The raw descriptor number (for ioctls such as KVM_IRQFD).
    public var rawValue: Int32 { owned.rawValue }

    /// Adds `count` to the counter, waking any waiter. On a blocking eventfd whose counter is
    /// full this waits for a reader (or a signal: `OSThread.interrupt`).
    public func signal(_ count: UInt64 = 1) {
        var value = count
        // A write only fails if the counter would overflow (it then stays signalled), if it was
        // interrupted, or if the descriptor is invalid, which is a host bug.
        let written = withUnsafeBytes(of: &value) { bytes in
            // SAFETY: `bytes` is the 8-byte local `value`, alive for the call.
            Glibc.write(rawValue, bytes.baseAddress, 8)
        }
        precondition(written == 8 || Errno.current == .wouldBlock || Errno.current == .interrupted,
                     "eventfd write failed: \(Errno.current)")
    }

    /// Blocks until the counter is non-zero, then returns and clears it.
    public func wait() throws(SystemError) -> UInt64 {
        var value: UInt64 = 0
        _ = try retryingOnInterrupt("read eventfd") {
            withUnsafeMutableBytes(of: &value) { bytes in
                // SAFETY: `bytes` is the 8-byte local `value`, alive for the call.
                Glibc.read(rawValue, bytes.baseAddress, 8)
            }
        }
        return value
    }

    /// Returns and clears the counter if it is non-zero, without blocking.
    public func consume() -> UInt64? {
        guard (try? Poll.wait(on: [rawValue], timeoutMilliseconds: 0))?.first == true else { return nil }
        return try? wait()
    }

    /// Waits up to `timeoutMilliseconds` (negative: forever) for the counter to become non-zero,
    /// then returns and clears it; `nil` on timeout.
    public func wait(timeoutMilliseconds: Int32) throws(SystemError) -> UInt64? {
        guard try Poll.wait(on: [rawValue], timeoutMilliseconds: timeoutMilliseconds).first == true else {
            return nil
        }
        return try wait()
    }
}
