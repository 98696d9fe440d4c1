import Glibc

/// poll(2) for readability over a few descriptors.
public enum Poll {
    /// Waits until at least one descriptor is readable (or hung up), or the timeout passes.
    /// - Returns: one flag per descriptor, `true` where it is readable or hung up.
    public static func wait(on descriptors: [Int32], timeoutMilliseconds: Int32) throws(SystemError) -> [Bool] {
        var entries = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let count = entries.count
        _ = try retryingOnInterrupt("poll") {
            entries.withUnsafeMutableBufferPointer { buffer in
                // SAFETY: the buffer holds `count` initialised pollfd entries for the call.
                Glibc.poll(buffer.baseAddress, nfds_t(count), timeoutMilliseconds)
            }
        }
        let ready = Int16(POLLIN | POLLHUP | POLLERR)
        return entries.map { $0.revents & ready != 0 }
    }
}
