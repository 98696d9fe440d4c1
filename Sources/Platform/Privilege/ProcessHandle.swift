import CPrivilege
import Glibc
import LinuxSupport
import SystemPackage

/// One process, held by a pidfd (`pidfd_open(2)`): unlike its pid, which the kernel hands out
/// again once the process is gone, the handle keeps naming that process, and says when it exits.
public final class ProcessHandle: Sendable {
    /// The process's pid in the caller's pid namespace.
    public let processID: pid_t
    private let descriptor: OwnedDescriptor

    /// A handle on the running process `pid`.
    /// - Throws: ESRCH if there is no such process (any more).
    public init(processID pid: pid_t) throws(SystemError) {
        let raw = cpriv_pidfd_open(pid)
        guard raw >= 0 else { throw .current("open a pidfd for process \(pid)") }
        processID = pid
        descriptor = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
    }

    /// Whether the process has exited (its pidfd is readable).
    public var hasExited: Bool {
        var entry = pollfd(fd: descriptor.rawValue, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 0) > 0 && entry.revents & Int16(POLLIN | POLLHUP) != 0
    }
}
