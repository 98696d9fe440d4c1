import Glibc

/// Whether a child process has exited, told from `/proc/<pid>/stat` (gone, or a zombie) rather
/// than by reaping it: Foundation's `Process` reaps its children itself, from a handler that
/// runs on a global dispatch queue. A caller on a Swift concurrency thread that blocks in
/// `Process.waitUntilExit` can starve that queue — with two cores, two such callers wait for
/// each other forever — so it polls this instead, with a deadline.
public enum ChildExit {
    /// Whether `pid` no longer runs: it has exited (a zombie not reaped yet) or is gone.
    public static func hasExited(_ pid: pid_t) -> Bool {
        guard let file = fopen("/proc/\(pid)/stat", "r") else { return true }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 512)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return true }
        let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // "pid (comm) S …": the state follows the last ')' (comm may hold parentheses).
        guard let close = line.lastIndex(of: ")") else { return true }
        let state = line[line.index(after: close)...].first { $0 != " " }
        return state == "Z" || state == "X"
    }

    /// Waits until `pid` has exited or `timeoutNanoseconds` pass; returns whether it exited.
    @discardableResult
    public static func wait(for pid: pid_t, timeoutNanoseconds: UInt64) -> Bool {
        let start = MonotonicClock.nanoseconds()
        while !hasExited(pid) {
            if MonotonicClock.nanoseconds() - start >= timeoutNanoseconds { return false }
            MonotonicClock.sleep(.milliseconds(10))
        }
        return true
    }
}
