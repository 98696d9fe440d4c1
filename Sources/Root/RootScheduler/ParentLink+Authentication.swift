import ControlProtocol
import Glibc
import LinuxSupport
import Privilege

/// The root's side of the parent's credentials: only the parent's user can connect to
/// `parent.sock`, and the root checks who did before it says anything (above all before it hands
/// over any partition's memory).
extension ParentLink {
    /// Listens on `path` with the socket owned by the parent's user, mode 0600, published only
    /// once it has that owner and mode (`SocketPublication`); when the parent runs as the root's
    /// own user, the socket stays the root's.
    static func listen(on path: String, for parent: UserIdentity) throws(SystemError) -> SequencedPacketSocket {
        let handOver = parent.uid != geteuid()
        do throws(PrivilegeError) {
            return try SequencedPacketSocket.listen(path: path, mode: 0o600, owner: handOver ? parent.uid : nil,
                                                    group: handOver ? parent.gid : nil)
        } catch {
            if case .system(let cause) = error { throw cause }
            throw SystemError("listen on \(path) for the parent partition (\(error))", errno: .permissionDenied)
        }
    }

    /// Whether the process at the other end runs as one of `parentUsers` (SO_PEERCRED, recorded
    /// by the kernel at connect time); a stranger is logged and hung up on.
    /// - Returns: the peer's credentials as the kernel recorded them at connect (SO_PEERCRED),
    ///   or `nil` if it is refused.
    func authenticate(_ channel: ControlChannel) -> PeerCredentials? {
        let peer: PeerCredentials
        do throws(SystemError) {
            peer = try channel.socket.peerCredentials()
        } catch {
            logger.warning("cannot tell who connected to the parent socket (\(error)); closed")
            return nil
        }
        guard parentUsers.contains(peer.uid) else {
            let expected = parentUsers.sorted().map { "\($0)" }.joined(separator: " or ")
            logger.warning("""
                refused a process of uid \(peer.uid) (pid \(peer.processID)) on the parent socket: the parent \
                partition runs as uid \(expected) (hv root --parent-user)
                """)
            return nil
        }
        return peer
    }
}
