import CPrivilege
import Glibc
import LinuxSupport

/// Who is at the other end of a connected Unix socket, as the kernel recorded it when the peer
/// connected (SO_PEERCRED, unix(7)): its process, user and group. A peer cannot forge them.
public struct PeerCredentials: Hashable, Sendable, CustomStringConvertible {
    public var processID: pid_t
    public var uid: uid_t
    public var gid: gid_t

    public init(processID: pid_t, uid: uid_t, gid: gid_t) {
        self.processID = processID
        self.uid = uid
        self.gid = gid
    }

    /// The peer of the connected Unix socket `socket`.
    public static func of(socket: Int32) throws(SystemError) -> PeerCredentials {
        var raw = cpriv_peer_credentials()
        guard cpriv_peer_credentials(socket, &raw) == 0 else { throw .current("read the peer credentials of a socket") }
        return PeerCredentials(processID: raw.pid, uid: raw.uid, gid: raw.gid)
    }

    public var description: String { "pid \(processID), uid \(uid), gid \(gid)" }
}

extension SequencedPacketSocket {
    /// The connected peer's credentials.
    public func peerCredentials() throws(SystemError) -> PeerCredentials {
        try PeerCredentials.of(socket: owned.rawValue)
    }
}

extension PeerCredentials {
    /// getsockopt(2)'s level and option name of SO_PEERCRED, and the raw value it fills, for socket
    /// libraries that read options themselves (SwiftNIO's `SocketOptionProvider`).
    public static let optionLevel: Int32 = SOL_SOCKET
    public static let optionName: Int32 = 17  // SO_PEERCRED (asm-generic/socket.h)
    public typealias RawValue = cpriv_peer_credentials
}

extension cpriv_peer_credentials: @retroactive @unchecked Sendable {}
