import CLinux
import Glibc
import SystemPackage

/// TUN/TAP devices (`Documentation/networking/tuntap.rst`): a TAP descriptor carries one
/// Ethernet frame per read or write, here always preceded by a virtio-net header.
public enum TAPDevice {
    /// Offloads the reader of a TAP accepts (TUNSETOFFLOAD's TUN_F_* bits).
    public struct Offloads: OptionSet, Sendable {
        public var rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Frames may arrive with a partial checksum (virtio NEEDS_CSUM).
        public static let checksum = Offloads(rawValue: CLINUX_TUN_F_CSUM)
        /// Frames may arrive as IPv4 TCP segmentation requests.
        public static let tcpSegmentation4 = Offloads(rawValue: CLINUX_TUN_F_TSO4)
        /// Frames may arrive as IPv6 TCP segmentation requests.
        public static let tcpSegmentation6 = Offloads(rawValue: CLINUX_TUN_F_TSO6)
    }

    /// Creates (or attaches to) TAP interface `name` with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR.
    /// Needs CAP_NET_ADMIN; the privileged side calls this and hands the descriptor on.
    /// - Parameter name: the interface name (at most 15 bytes); empty lets the kernel pick "tapN".
    /// - Returns: the descriptor (close-on-exec) and the interface's name.
    public static func create(name: String) throws(SystemError) -> (descriptor: OwnedDescriptor, name: String) {
        guard name.utf8.count < Int(CLINUX_IFNAMSIZ) else {
            throw SystemError("create TAP \(name): name longer than 15 bytes", errno: .invalidArgument)
        }
        let raw = try retryingOnInterrupt("open /dev/net/tun") { open("/dev/net/tun", O_RDWR | O_CLOEXEC) }
        let descriptor = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
        var actual = [CChar](repeating: 0, count: Int(CLINUX_IFNAMSIZ) + 1)
        _ = try retryingOnInterrupt("TUNSETIFF \(name)") { clinux_tun_attach_tap(raw, name, &actual) }
        let bytes = actual.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return (descriptor, String(decoding: bytes, as: UTF8.self))
    }

    /// Prepares a TAP descriptor created elsewhere for a switch port: virtio-net headers of
    /// `headerSize` bytes (TUNSETVNETHDRSZ), the offloads this reader accepts (TUNSETOFFLOAD),
    /// and non-blocking reads and writes.
    public static func configure(_ descriptor: OwnedDescriptor, headerSize: Int32, offloads: Offloads) throws(SystemError) {
        let raw = descriptor.rawValue
        _ = try retryingOnInterrupt("TUNSETVNETHDRSZ \(headerSize)") { clinux_tun_set_vnet_header_size(raw, headerSize) }
        _ = try retryingOnInterrupt("TUNSETOFFLOAD \(offloads.rawValue)") { clinux_tun_set_offload(raw, offloads.rawValue) }
        try FrameIO.setNonBlocking(descriptor)
    }
}

/// Non-blocking frame reads and writes on TAP and packet-socket descriptors.
public enum FrameIO {
    /// Sets O_NONBLOCK.
    public static func setNonBlocking(_ descriptor: OwnedDescriptor) throws(SystemError) {
        let raw = descriptor.rawValue
        let flags = try retryingOnInterrupt("F_GETFL \(raw)") { fcntl(raw, F_GETFL) }
        _ = try retryingOnInterrupt("F_SETFL O_NONBLOCK \(raw)") { fcntl(raw, F_SETFL, flags | O_NONBLOCK) }
    }

    /// Reads one frame into `buffer`.
    /// - Returns: its length, or `nil` if none is waiting (EAGAIN).
    public static func read(_ descriptor: OwnedDescriptor, into buffer: inout [UInt8]) throws(SystemError) -> Int? {
        let raw = descriptor.rawValue
        let capacity = buffer.count
        while true {
            let count = buffer.withUnsafeMutableBytes { bytes in
                // SAFETY: `bytes` covers the array's `capacity` bytes for the duration of the call.
                Glibc.read(raw, bytes.baseAddress, capacity)
            }
            if count >= 0 { return count }
            let error = Errno.current
            if error == .interrupted { continue }
            if error == .wouldBlock || error == .resourceTemporarilyUnavailable { return nil }
            throw SystemError("read frame from descriptor \(raw)", errno: error)
        }
    }

    /// Writes `header` and `frame` as one frame (writev).
    /// - Returns: `false` if the descriptor would block (the frame was not written).
    public static func write(_ descriptor: OwnedDescriptor, header: [UInt8], frame: [UInt8]) throws(SystemError) -> Bool {
        let raw = descriptor.rawValue
        while true {
            let written = header.withUnsafeBytes { headerBytes in
                frame.withUnsafeBytes { frameBytes in
                    // SAFETY: the two iovecs live on the stack for the call; both buffers are alive
                    // for it and writev only reads them.
                    withUnsafeTemporaryAllocation(of: iovec.self, capacity: 2) { vectors in
                        vectors.initialize(repeating: iovec())
                        vectors[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: headerBytes.baseAddress),
                                           iov_len: headerBytes.count)
                        vectors[1] = iovec(iov_base: UnsafeMutableRawPointer(mutating: frameBytes.baseAddress),
                                           iov_len: frameBytes.count)
                        return Glibc.writev(raw, vectors.baseAddress, 2)
                    }
                }
            }
            if written >= 0 { return true }
            let error = Errno.current
            if error == .interrupted { continue }
            if error == .wouldBlock || error == .resourceTemporarilyUnavailable || error == .noBufferSpace { return false }
            throw SystemError("write frame to descriptor \(raw)", errno: error)
        }
    }
}
