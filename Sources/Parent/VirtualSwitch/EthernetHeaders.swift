import NetworkProtocol

/// Reading and patching the Ethernet, IPv4, IPv6 and TCP/UDP headers of a frame, for the
/// offload work the switch does itself. Every accessor is bounds-checked: a frame whose headers
/// do not fit yields `nil`, never a trap.
enum EthernetHeaders {
    static let etherTypeIPv4: UInt16 = 0x0800
    static let etherTypeIPv6: UInt16 = 0x86DD
    static let etherTypeVLAN: UInt16 = 0x8100
    static let etherTypeQinQ: UInt16 = 0x88A8
    static let protocolTCP: UInt8 = 6
    static let protocolUDP: UInt8 = 17

    static func u16(_ frame: [UInt8], _ offset: Int) -> UInt16? {
        guard offset >= 0, offset + 2 <= frame.count else { return nil }
        return UInt16(frame[offset]) << 8 | UInt16(frame[offset + 1])
    }

    static func store16(_ value: UInt16, _ frame: inout [UInt8], _ offset: Int) {
        frame[offset] = UInt8(value >> 8)
        frame[offset + 1] = UInt8(value & 0xFF)
    }

    static func u32(_ frame: [UInt8], _ offset: Int) -> UInt32? {
        guard let high = u16(frame, offset), let low = u16(frame, offset + 2) else { return nil }
        return UInt32(high) << 16 | UInt32(low)
    }

    static func store32(_ value: UInt32, _ frame: inout [UInt8], _ offset: Int) {
        store16(UInt16(value >> 16), &frame, offset)
        store16(UInt16(value & 0xFFFF), &frame, offset + 2)
    }

    /// The network-layer protocol and where its header starts, past any 802.1Q/802.1ad tags.
    static func network(_ frame: [UInt8]) -> (etherType: UInt16, offset: Int)? {
        var offset = 12
        var tags = 0
        while let type = u16(frame, offset) {
            if type == etherTypeVLAN || type == etherTypeQinQ, tags < 2 {
                offset += NetworkFrame.vlanTagSize
                tags += 1
                continue
            }
            return (type, offset + 2)
        }
        return nil
    }

    /// The 16-bit one's-complement sum of `frame[range]` added to `initial` (not folded to 16
    /// bits until the end, not complemented).
    static func sum(_ frame: [UInt8], _ start: Int, _ end: Int, initial: UInt32 = 0) -> UInt32 {
        var total = UInt64(initial)
        var index = start
        while index + 1 < end {
            total += UInt64(frame[index]) << 8 | UInt64(frame[index + 1])
            index += 2
        }
        if index < end { total += UInt64(frame[index]) << 8 }
        while total > 0xFFFF { total = (total & 0xFFFF) + (total >> 16) }
        return UInt32(total)
    }

    /// Folds a sum to 16 bits.
    static func fold(_ value: UInt32) -> UInt16 {
        var total = value
        while total > 0xFFFF { total = (total & 0xFFFF) + (total >> 16) }
        return UInt16(total)
    }

    /// Recomputes the IPv4 header checksum of the header at `offset`.
    static func recomputeIPv4HeaderChecksum(_ frame: inout [UInt8], at offset: Int) -> Bool {
        guard offset + 20 <= frame.count else { return false }
        let headerLength = Int(frame[offset] & 0x0F) * 4
        guard headerLength >= 20, offset + headerLength <= frame.count else { return false }
        store16(0, &frame, offset + 10)
        store16(~fold(sum(frame, offset, offset + headerLength)), &frame, offset + 10)
        return true
    }

    /// The pseudo-header sum (RFC 793/768 for IPv4, RFC 8200 §8.1 for IPv6) for a transport
    /// segment of `length` bytes, or `nil` if the IP header does not fit.
    static func pseudoHeaderSum(_ frame: [UInt8], network: (etherType: UInt16, offset: Int), protocol number: UInt8,
                                length: Int) -> UInt32? {
        let offset = network.offset
        switch network.etherType {
        case etherTypeIPv4:
            guard offset + 20 <= frame.count else { return nil }
            return sum(frame, offset + 12, offset + 20, initial: UInt32(number) + UInt32(length & 0xFFFF))
        case etherTypeIPv6:
            guard offset + 40 <= frame.count else { return nil }
            return sum(frame, offset + 8, offset + 40,
                       initial: UInt32(number) + UInt32(length >> 16) + UInt32(length & 0xFFFF))
        default:
            return nil
        }
    }
}
