import CLinux
import Glibc
import SystemPackage

/// A Unix-domain SOCK_SEQPACKET socket: reliable, ordered, message-preserving, and able to
/// carry file descriptors (SCM_RIGHTS). The root and the parent partition talk over one.
public final class SequencedPacketSocket: Sendable {
    /// The largest message either side sends; larger ones are a protocol error.
    public static let maximumMessageSize = 64 * 1024
    /// The most descriptors one message carries.
    public static let maximumDescriptors = 64

    public let owned: OwnedDescriptor

    init(owned: OwnedDescriptor) { self.owned = owned }

    /// Binds and listens on `path`, replacing a stale socket file left by an earlier process.
    public static func listen(path: String, backlog: Int32 = 8) throws(SystemError) -> SequencedPacketSocket {
        let socket = try makeSocket()
        _ = unlink(path)
        var address = try unixAddress(path)
        let length = socklen_t(MemoryLayout<sockaddr_un>.size)
        _ = try retryingOnInterrupt("bind \(path)") {
            withUnsafePointer(to: &address) { pointer in
                // SAFETY: sockaddr_un is layout-compatible with the sockaddr prefix bind reads.
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket.owned.rawValue, $0, length) }
            }
        }
        _ = try retryingOnInterrupt("listen on \(path)") { Glibc.listen(socket.owned.rawValue, backlog) }
        return socket
    }

    /// Connects to a listening socket at `path`.
    public static func connect(path: String) throws(SystemError) -> SequencedPacketSocket {
        let socket = try makeSocket()
        var address = try unixAddress(path)
        let length = socklen_t(MemoryLayout<sockaddr_un>.size)
        _ = try retryingOnInterrupt("connect to \(path)") {
            withUnsafePointer(to: &address) { pointer in
                // SAFETY: as in `listen`.
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(socket.owned.rawValue, $0, length) }
            }
        }
        return socket
    }

    /// A connected pair, for tests and in-process use.
    public static func pair() throws(SystemError) -> (SequencedPacketSocket, SequencedPacketSocket) {
        var fds: [Int32] = [0, 0]
        _ = try retryingOnInterrupt("socketpair") {
            socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
        }
        return (SequencedPacketSocket(owned: OwnedDescriptor(adopting: FileDescriptor(rawValue: fds[0]))),
                SequencedPacketSocket(owned: OwnedDescriptor(adopting: FileDescriptor(rawValue: fds[1]))))
    }

    /// Waits for the next connection.
    public func accept() throws(SystemError) -> SequencedPacketSocket {
        let raw = try retryingOnInterrupt("accept") { clinux_accept_cloexec(owned.rawValue) }
        return SequencedPacketSocket(owned: OwnedDescriptor(adopting: FileDescriptor(rawValue: raw)))
    }

    /// Sends one message with `descriptors` attached.
    /// - Parameter nonBlocking: fail with EAGAIN instead of waiting when the peer's receive
    ///   queue is full.
    /// - Throws: EMSGSIZE for a message over `maximumMessageSize` bytes or `maximumDescriptors`
    ///   descriptors (which the peer could not receive), and whatever sendmsg(2) fails with.
    public func send(_ bytes: [UInt8], descriptors: [Int32] = [], nonBlocking: Bool = false) throws(SystemError) {
        guard bytes.count <= Self.maximumMessageSize, descriptors.count <= Self.maximumDescriptors else {
            throw SystemError("send a \(bytes.count)-byte message with \(descriptors.count) descriptors (limits "
                              + "\(Self.maximumMessageSize) and \(Self.maximumDescriptors))", errno: .messageTooLong)
        }
        let controlLength = descriptors.isEmpty ? 0 : clinux_cmsg_space(descriptors.count * 4)
        var control = [UInt8](repeating: 0, count: max(controlLength, 1))
        var payload = bytes
        let sent = payload.withUnsafeMutableBytes { payloadBytes in
            control.withUnsafeMutableBytes { controlBytes in
                var vector = iovec(iov_base: payloadBytes.baseAddress, iov_len: payloadBytes.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    if controlLength > 0 {
                        message.msg_control = controlBytes.baseAddress
                        message.msg_controllen = controlLength
                        // SAFETY: msg_control points at `controlLength` bytes sized by CMSG_SPACE,
                        // so the first header and its data area fit.
                        if let header = clinux_cmsg_firsthdr(&message) {
                            header.pointee.cmsg_level = SOL_SOCKET
                            header.pointee.cmsg_type = Int32(SCM_RIGHTS)
                            header.pointee.cmsg_len = clinux_cmsg_len(descriptors.count * 4)
                            let data = UnsafeMutableRawPointer(clinux_cmsg_data(header))
                            for (index, fd) in descriptors.enumerated() {
                                data?.storeBytes(of: fd, toByteOffset: index * 4, as: Int32.self)
                            }
                        }
                    }
                    while true {
                        let flags = Int32(MSG_NOSIGNAL) | (nonBlocking ? Int32(MSG_DONTWAIT) : 0)
                        let result = sendmsg(owned.rawValue, &message, flags)
                        if result == -1 && Errno.current == .interrupted { continue }
                        return result
                    }
                }
            }
        }
        guard sent >= 0 else { throw SystemError.current("send \(bytes.count)-byte message") }
    }

    /// Receives one message and any descriptors that came with it. An empty result with no
    /// descriptors means the peer closed the connection.
    public func receive() throws(SystemError) -> (bytes: [UInt8], descriptors: [OwnedDescriptor]) {
        var payload = [UInt8](repeating: 0, count: Self.maximumMessageSize)
        let controlLength = clinux_cmsg_space(Self.maximumDescriptors * 4)
        var control = [UInt8](repeating: 0, count: controlLength)
        var received: [OwnedDescriptor] = []
        var truncated = false
        let count = payload.withUnsafeMutableBytes { payloadBytes in
            control.withUnsafeMutableBytes { controlBytes in
                var vector = iovec(iov_base: payloadBytes.baseAddress, iov_len: payloadBytes.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    message.msg_control = controlBytes.baseAddress
                    message.msg_controllen = controlLength
                    var result: Int
                    repeat {
                        result = recvmsg(owned.rawValue, &message, Int32(MSG_CMSG_CLOEXEC))
                    } while result == -1 && Errno.current == .interrupted
                    guard result >= 0 else { return result }
                    truncated = message.msg_flags & Int32(MSG_TRUNC | MSG_CTRUNC) != 0
                    // SAFETY: the kernel filled msg_control with well-formed headers within
                    // msg_controllen; CMSG_FIRSTHDR/NXTHDR never step outside it.
                    var header = clinux_cmsg_firsthdr(&message)
                    while let current = header {
                        if current.pointee.cmsg_level == SOL_SOCKET && current.pointee.cmsg_type == Int32(SCM_RIGHTS) {
                            let dataLength = Int(current.pointee.cmsg_len) - clinux_cmsg_len(0)
                            let data = UnsafeRawPointer(clinux_cmsg_data(current))
                            for index in 0..<(dataLength / 4) {
                                if let fd = data?.loadUnaligned(fromByteOffset: index * 4, as: Int32.self) {
                                    received.append(OwnedDescriptor(adopting: FileDescriptor(rawValue: fd)))
                                }
                            }
                        }
                        header = clinux_cmsg_nxthdr(&message, current)
                    }
                    return result
                }
            }
        }
        guard count >= 0 else { throw SystemError.current("receive message") }
        if truncated { throw SystemError("receive message (truncated)", errno: .messageTooLong) }
        payload.removeSubrange(count...)
        return (payload, received)
    }

    /// Shuts the connection down in both directions, waking a blocked `receive` on either side.
    public func shutdown() {
        _ = Glibc.shutdown(owned.rawValue, Int32(SHUT_RDWR))
    }

    private static func makeSocket() throws(SystemError) -> SequencedPacketSocket {
        let raw = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard raw >= 0 else { throw SystemError.current("create Unix socket") }
        return SequencedPacketSocket(owned: OwnedDescriptor(adopting: FileDescriptor(rawValue: raw)))
    }

    private static func unixAddress(_ path: String) throws(SystemError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { throw SystemError("use socket path \(path)", errno: .fileNameTooLong) }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: bytes)
        }
        return address
    }
}
