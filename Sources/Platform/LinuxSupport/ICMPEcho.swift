import CLinux
import Glibc
import SystemPackage

/// ICMP echo (RFC 792) over a raw socket: the round trip of a ping, for baselines measured
/// beside the hypervisor's own (`hv bench network`). Needs CAP_NET_RAW.
public final class ICMPEcho: Sendable {
    let socket: OwnedDescriptor
    let identifier: UInt16

    /// Opens a raw ICMP socket in the calling thread's network namespace.
    public init(identifier: UInt16) throws(SystemError) {
        let raw = clinux_icmp_socket()
        guard raw >= 0 else { throw SystemError.current("open a raw ICMP socket") }
        socket = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
        self.identifier = identifier
    }

    /// Sends echo request `sequence` with `dataSize` bytes to IPv4 `address` (host byte order)
    /// and waits up to `timeoutMilliseconds` for its reply.
    /// - Returns: the round trip in nanoseconds, or `nil` if no reply came in time.
    public func ping(_ address: UInt32, sequence: UInt16, dataSize: Int = 56, timeoutMilliseconds: Int32 = 1000)
        throws(SystemError) -> UInt64?
    {
        var request: [UInt8] = [8, 0, 0, 0, UInt8(identifier >> 8), UInt8(identifier & 0xFF),
                                UInt8(sequence >> 8), UInt8(sequence & 0xFF)]
        request += (0..<dataSize).map { UInt8(truncatingIfNeeded: $0) }
        let checksum = Self.checksum(request)
        request[2] = UInt8(checksum >> 8)
        request[3] = UInt8(checksum & 0xFF)
        let start = MonotonicClock.nanoseconds()
        let count = request.count
        let raw = socket.rawValue
        _ = try retryingOnInterrupt("send ICMP echo") {
            request.withUnsafeBytes { bytes in
                // SAFETY: `bytes` covers the request for the call.
                clinux_send_ipv4(raw, bytes.baseAddress, UInt(count), address)
            }
        }
        let deadline = start + UInt64(timeoutMilliseconds) * 1_000_000
        var reply = [UInt8](repeating: 0, count: 2048)
        while true {
            let now = MonotonicClock.nanoseconds()
            guard now < deadline else { return nil }
            let ready = try Poll.wait(on: [raw], timeoutMilliseconds: Int32((deadline - now) / 1_000_000 + 1))
            guard ready[0] else { continue }
            let capacity = reply.count
            let received = reply.withUnsafeMutableBytes { bytes in
                // SAFETY: `bytes` covers the reply buffer's `capacity` bytes for the call.
                Glibc.recv(raw, bytes.baseAddress, capacity, Int32(MSG_DONTWAIT))
            }
            guard received >= 28 else { continue }
            // IPv4 header, then ICMP: type 0 (echo reply), our identifier and sequence.
            let headerLength = Int(reply[0] & 0x0F) * 4
            guard received >= headerLength + 8, reply[headerLength] == 0,
                  UInt16(reply[headerLength + 4]) << 8 | UInt16(reply[headerLength + 5]) == identifier,
                  UInt16(reply[headerLength + 6]) << 8 | UInt16(reply[headerLength + 7]) == sequence else { continue }
            return MonotonicClock.nanoseconds() - start
        }
    }

    /// The RFC 1071 checksum.
    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var index = 0
        while index + 1 < bytes.count {
            sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
            index += 2
        }
        if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(truncatingIfNeeded: sum)
    }
}

/// A counter file of sysfs (e.g. /sys/class/net/IF/statistics/rx_packets), read again and again
/// through one open descriptor.
public final class SysfsCounter: Sendable {
    let file: OwnedDescriptor

    public init(path: String) throws(SystemError) {
        let raw = try retryingOnInterrupt("open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
        file = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
    }

    /// The counter's value now.
    public func read() throws(SystemError) -> UInt64 {
        var buffer = [UInt8](repeating: 0, count: 32)
        let raw = file.rawValue
        let count = try retryingOnInterrupt("read counter") {
            buffer.withUnsafeMutableBytes { bytes in
                // SAFETY: `bytes` covers the 32-byte buffer for the call.
                pread(raw, bytes.baseAddress, 32, 0)
            }
        }
        var value: UInt64 = 0
        for byte in buffer.prefix(count) where byte >= 0x30 && byte <= 0x39 {
            value = value &* 10 &+ UInt64(byte - 0x30)
        }
        return value
    }
}
