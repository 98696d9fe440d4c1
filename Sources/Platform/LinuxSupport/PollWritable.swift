import Glibc

extension Poll {
    /// Waits until `descriptor` can be written without blocking (or has hung up or failed), or
    /// the timeout passes.
    /// - Returns: `true` when it is writable, hung up or failed (a send then tells which).
    public static func waitWritable(_ descriptor: Int32, timeoutMilliseconds: Int32) throws(SystemError) -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
        _ = try retryingOnInterrupt("poll for writing") { Glibc.poll(&entry, 1, timeoutMilliseconds) }
        return entry.revents & Int16(POLLOUT | POLLHUP | POLLERR) != 0
    }
}
