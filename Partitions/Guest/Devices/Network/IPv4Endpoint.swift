import HyperV
import NetworkProtocol

/// The smallest IPv4 presence that lets a guest be pinged and ping: ARP (RFC 826) requests
/// answered and replies learned, ICMP echo (RFC 792) answered and requests built, IPv4 headers
/// (RFC 791) with their checksums (RFC 1071). No fragments, no options, no routing: peers are
/// on the link.
public struct IPv4Endpoint {
    public let macAddress: MACAddress
    /// This endpoint's address, host byte order (10.0.0.2 is 0x0A00_0002).
    public let address: UInt32
    /// Learned neighbours, newest last.
    var neighbours: [(address: UInt32, mac: MACAddress)] = []
    var nextIdentification: UInt16 = 1

    /// Most neighbours remembered.
    static var neighbourLimit: Int { 16 }
    public static var etherTypeIPv4: UInt16 { 0x0800 }
    public static var etherTypeARP: UInt16 { 0x0806 }

    public init(macAddress: MACAddress, address: UInt32) {
        self.macAddress = macAddress
        self.address = address
    }

    /// What a received frame meant.
    public enum Event {
        case none
        /// Send this frame back (an ARP or echo reply).
        case reply([UInt8])
        /// An echo reply to one of our requests.
        case echoReply(from: UInt32, identifier: UInt16, sequence: UInt16)
    }

    /// The MAC address of `neighbour`, if learned.
    public func neighbour(_ neighbour: UInt32) -> MACAddress? {
        neighbours.last { $0.address == neighbour }?.mac
    }

    mutating func learn(_ neighbour: UInt32, _ mac: MACAddress) {
        guard neighbour != 0, !mac.isGroup else { return }
        neighbours.removeAll { $0.address == neighbour }
        if neighbours.count >= Self.neighbourLimit { neighbours.removeFirst() }
        neighbours.append((neighbour, mac))
    }

    /// Handles one received frame (checked before it is read: it may be anything).
    public mutating func handle(_ frame: [UInt8]) -> Event {
        guard frame.count >= 14, let etherType = frame.bigEndian16(at: 12) else { return .none }
        if etherType == Self.etherTypeARP { return arp(frame) }
        guard etherType == Self.etherTypeIPv4, frame.count >= 34 else { return .none }
        let versionLength = frame[14]
        let headerLength = Int(versionLength & 0x0F) * 4
        guard versionLength >> 4 == 4, headerLength >= 20, let total = frame.bigEndian16(at: 16),
              Int(total) >= headerLength, 14 + Int(total) <= frame.count,
              frame[23] == 1,  // ICMP
              let source = frame.bigEndian32(at: 26), let destination = frame.bigEndian32(at: 30), destination == address,
              Self.checksum(frame, from: 14, count: headerLength) == 0 else { return .none }
        let icmp = 14 + headerLength
        let icmpLength = Int(total) - headerLength
        guard icmpLength >= 8, Self.checksum(frame, from: icmp, count: icmpLength) == 0,
              let sourceMAC = MACAddress.source(of: frame) else { return .none }
        learn(source, sourceMAC)
        let identifier = frame.bigEndian16(at: icmp + 4) ?? 0
        let sequence = frame.bigEndian16(at: icmp + 6) ?? 0
        switch frame[icmp] {
        case 8:  // echo request: answer with the same identifier, sequence and data
            let data = Array(frame[(icmp + 8)..<(icmp + icmpLength)])
            return .reply(echo(type: 0, to: sourceMAC, ip: source, identifier: identifier, sequence: sequence, data: data))
        case 0:
            return .echoReply(from: source, identifier: identifier, sequence: sequence)
        default:
            return .none
        }
    }

    mutating func arp(_ frame: [UInt8]) -> Event {
        // Ethernet/IPv4 ARP: htype 1, ptype 0x0800, hlen 6, plen 4.
        guard frame.count >= 42, frame.bigEndian16(at: 14) == 1, frame.bigEndian16(at: 16) == Self.etherTypeIPv4,
              frame[18] == 6, frame[19] == 4, let operation = frame.bigEndian16(at: 20),
              let senderMAC = MACAddress(bytes: frame, at: 22), let sender = frame.bigEndian32(at: 28),
              let target = frame.bigEndian32(at: 38) else { return .none }
        if operation == 2 || target == address { learn(sender, senderMAC) }
        guard operation == 1, target == address else { return .none }
        return .reply(arpFrame(operation: 2, to: senderMAC, targetMAC: senderMAC, target: sender))
    }

    /// An ARP request for `target` (broadcast).
    public func arpRequest(for target: UInt32) -> [UInt8] {
        arpFrame(operation: 1, to: .broadcast, targetMAC: .zero, target: target)
    }

    func arpFrame(operation: UInt16, to destination: MACAddress, targetMAC: MACAddress, target: UInt32) -> [UInt8] {
        var frame = destination.bytes + macAddress.bytes
        frame.appendBigEndian16(Self.etherTypeARP)
        frame.appendBigEndian16(1)
        frame.appendBigEndian16(Self.etherTypeIPv4)
        frame.append(6)
        frame.append(4)
        frame.appendBigEndian16(operation)
        frame += macAddress.bytes
        frame.appendBigEndian32(address)
        frame += targetMAC.bytes
        frame.appendBigEndian32(target)
        while frame.count < 60 { frame.append(0) }
        return frame
    }

    /// An ICMP echo request to `ip` at `mac` with `dataSize` bytes of data.
    public mutating func echoRequest(to mac: MACAddress, ip: UInt32, identifier: UInt16, sequence: UInt16,
                                     dataSize: Int = 56) -> [UInt8] {
        var data = [UInt8](repeating: 0, count: max(0, dataSize))
        for index in data.indices { data[index] = UInt8(truncatingIfNeeded: index) }
        return echo(type: 8, to: mac, ip: ip, identifier: identifier, sequence: sequence, data: data)
    }

    mutating func echo(type: UInt8, to mac: MACAddress, ip: UInt32, identifier: UInt16, sequence: UInt16,
                       data: [UInt8]) -> [UInt8] {
        var frame = mac.bytes + macAddress.bytes
        frame.appendBigEndian16(Self.etherTypeIPv4)
        let total = 20 + 8 + data.count
        frame.append(0x45)
        frame.append(0)
        frame.appendBigEndian16(UInt16(truncatingIfNeeded: total))
        frame.appendBigEndian16(nextIdentification)
        nextIdentification &+= 1
        frame.appendBigEndian16(0x4000)  // don't fragment
        frame.append(64)
        frame.append(1)
        frame.appendBigEndian16(0)
        frame.appendBigEndian32(address)
        frame.appendBigEndian32(ip)
        let headerChecksum = Self.checksum(frame, from: 14, count: 20)
        frame[24] = UInt8(headerChecksum >> 8)
        frame[25] = UInt8(headerChecksum & 0xFF)
        frame.append(type)
        frame.append(0)
        frame.appendBigEndian16(0)
        frame.appendBigEndian16(identifier)
        frame.appendBigEndian16(sequence)
        frame += data
        let icmpChecksum = Self.checksum(frame, from: 34, count: 8 + data.count)
        frame[36] = UInt8(icmpChecksum >> 8)
        frame[37] = UInt8(icmpChecksum & 0xFF)
        while frame.count < 60 { frame.append(0) }
        return frame
    }

    /// The RFC 1071 Internet checksum of `count` bytes at `from` (0 over data that carries a
    /// correct checksum).
    public static func checksum(_ bytes: [UInt8], from: Int, count: Int) -> UInt16 {
        var sum: UInt32 = 0
        var index = from
        let end = from + count
        while index + 1 < end {
            sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
            index += 2
        }
        if index < end { sum += UInt32(bytes[index]) << 8 }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(truncatingIfNeeded: sum)
    }

    /// Parses "10.0.0.2" into host byte order.
    public static func parse(_ text: String) -> UInt32? {
        var value: UInt32 = 0
        var parts = 0
        for part in text.split(separator: ".") {
            guard let octet = decimal(part), octet <= 255 else { return nil }
            value = value << 8 | UInt32(octet)
            parts += 1
        }
        return parts == 4 ? value : nil
    }

    static func decimal(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.utf8.count <= 3 else { return nil }
        var value = 0
        for byte in text.utf8 {
            guard byte >= 0x30 && byte <= 0x39 else { return nil }
            value = value * 10 + Int(byte - 0x30)
        }
        return value
    }
}

extension Array where Element == UInt8 {
    func bigEndian16(at offset: Int) -> UInt16? {
        guard offset >= 0, offset + 2 <= count else { return nil }
        return UInt16(self[offset]) << 8 | UInt16(self[offset + 1])
    }

    func bigEndian32(at offset: Int) -> UInt32? {
        guard offset >= 0, offset + 4 <= count else { return nil }
        return UInt32(self[offset]) << 24 | UInt32(self[offset + 1]) << 16 | UInt32(self[offset + 2]) << 8
            | UInt32(self[offset + 3])
    }

    mutating func appendBigEndian16(_ value: UInt16) {
        append(UInt8(value >> 8))
        append(UInt8(value & 0xFF))
    }

    mutating func appendBigEndian32(_ value: UInt32) {
        append(UInt8(value >> 24))
        append(UInt8((value >> 16) & 0xFF))
        append(UInt8((value >> 8) & 0xFF))
        append(UInt8(value & 0xFF))
    }
}
