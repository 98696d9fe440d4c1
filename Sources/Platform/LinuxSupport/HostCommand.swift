import Glibc
import SystemPackage

/// Runs a host program to completion and returns what it printed: posix_spawn(3) and
/// waitpid(2) on the calling thread, its output captured in anonymous files, so it never
/// deadlocks on a full pipe (a program that writes much to standard error while the caller reads
/// standard output) and never depends on Foundation's child reaping, which runs on a global
/// dispatch queue that blocked Swift concurrency threads can starve (see `ChildExit`).
/// Synchronous on purpose: its callers (the benchmarks' fio runs and `ip` set-up and clean-up)
/// are synchronous, some in `defer`; asynchronous callers use swift-subprocess (GuestBuilder).
public enum HostCommand {
    /// What a finished program left.
    public struct Result: Sendable {
        /// The exit status, or 128 + the signal that ended it.
        public var status: Int32
        public var output: String
        public var errors: String
    }

    /// Runs `executable` with `arguments` (and `environment`, replacing this process's, if
    /// given). Waits at most `timeoutSeconds`, then kills it with SIGKILL.
    public static func run(_ executable: String, _ arguments: [String], environment: [String]? = nil,
                           timeoutSeconds: Int = 3600) throws(SystemError) -> Result {
        let output = try capture("stdout")
        let errors = try capture("stderr")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output.rawValue, 1)
        posix_spawn_file_actions_adddup2(&actions, errors.rawValue, 2)
        var pid = pid_t()
        let argv = [executable] + arguments
        let environ = environment ?? ProcessEnvironment.current
        let result = withCStrings(argv) { argvPointers in
            withCStrings(environ) { environmentPointers in
                posix_spawn(&pid, executable, &actions, nil, argvPointers, environmentPointers)
            }
        }
        guard result == 0 else { throw SystemError("run \(executable)", errno: Errno(rawValue: result)) }
        var status: Int32 = 0
        let deadline = MonotonicClock.nanoseconds() + UInt64(timeoutSeconds) * 1_000_000_000
        while true {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid { break }
            if reaped < 0 && errno != EINTR { throw SystemError("wait for \(executable)", errno: .current) }
            if MonotonicClock.nanoseconds() > deadline { kill(pid, SIGKILL) }
            MonotonicClock.sleep(.milliseconds(2))
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, spelled out (they are macros).
        let signal = status & 0x7F
        let code = signal == 0 ? (status >> 8) & 0xFF : 128 + signal
        return Result(status: code, output: read(output), errors: read(errors))
    }

    /// An anonymous file for a stream (unlinked at once: it goes when the descriptor does).
    private static func capture(_ name: String) throws(SystemError) -> OwnedDescriptor {
        var template = Array("/tmp/hv-\(name)-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw SystemError("make a file for a program's \(name)", errno: .current) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        return OwnedDescriptor(adopting: FileDescriptor(rawValue: fd))
    }

    private static func read(_ descriptor: OwnedDescriptor) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var offset: off_t = 0
        while true {
            let count = chunk.withUnsafeMutableBytes { pread(descriptor.rawValue, $0.baseAddress, $0.count, offset) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk.prefix(count)
            offset += off_t(count)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `strings` as a NUL-terminated array of C strings, alive for `body`.
    private static func withCStrings<T>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> T) -> T {
        // SAFETY: strdup's copies outlive `body` and are freed after it; the array ends with nil
        // as posix_spawn's argv and envp must.
        let copies = strings.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        return body(copies + [nil])
    }
}

/// This process's environment as `NAME=value` strings.
public enum ProcessEnvironment {
    public static var current: [String] {
        var result: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            result.append(String(cString: entry))
            pointer += 1
        }
        return result
    }
}
