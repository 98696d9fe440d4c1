import Glibc
import LinuxSupport
import Logging
import Privilege

extension ParentPartitionService {
    /// Checks that the process listening on the root's socket runs as one of `rootUsers`
    /// (SO_PEERCRED): whoever else managed to put a socket there gets no hello, and hands this
    /// parent no partition to serve.
    func authenticateRoot(_ socket: SequencedPacketSocket) throws(SystemError) {
        let peer = try socket.peerCredentials()
        guard rootUsers.contains(peer.uid) else {
            let level: Logger.Level = strangerReported.exchange(true, ordering: .relaxed) ? .debug : .error
            logger.log(level: level, """
                the process at \(socketPath) (pid \(peer.processID)) runs as uid \(peer.uid), not as the root \
                scheduler's user (uid \(rootUsers.sorted().map { "\($0)" }.joined(separator: " or "))); not connecting
                """)
            throw SystemError("authenticate the root scheduler", errno: .permissionDenied)
        }
    }
}
