import NetworkProtocol

/// Builds IPv4/IPv6 TCP/UDP frames for offload tests and verifies their checksums
/// independently of the code under test (straight RFC 1071 arithmetic).
enum PacketBuilder {
    static let source = MACAddress(0x02, 0, 0, 0, 0, 0x01)
    static let destination = MACAddress(0x02, 0, 0, 0, 0, 0x02)

    static func ipv4TCP(payload: Int, sequence: UInt32 = 1000, flags: UInt8 = 0x18, lsoStyle: Bool = false,
                        from: MACAddress = source, to: MACAddress = destination) -> [UInt8] {
        var frame = to.bytes + from.bytes + [0x08, 0x00]
        let total = 20 + 20 + payload
        // Truncated: an LSO frame may be longer than the field holds (`lsoStyle` zeroes it).
        frame += [0x45, 0, UInt8(truncatingIfNeeded: total >> 8), UInt8(total & 0xFF), 0x12, 0x34, 0x40, 0, 64, 6, 0, 0,
                  10, 0, 0, 1, 10, 0, 0, 2]
        frame += [0x30, 0x39, 0x00, 0x50] + be32(sequence) + be32(77) + [0x50, flags, 0xFF, 0xFF, 0, 0, 0, 0]
        frame += (0..<payload).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        if lsoStyle {
            // What netvsc_xmit leaves for an LSO frame: tot_len and IP checksum 0, TCP checksum
            // seeded with the length-less pseudo-header sum.
            frame[16] = 0
            frame[17] = 0
            let seed = fold(sum(Array(frame[26..<34])) + 6)
            frame[50] = UInt8(seed >> 8)
            frame[51] = UInt8(seed & 0xFF)
        } else {
            let checksum = ~fold(sum(Array(frame[14..<34])))
            frame[24] = UInt8(checksum >> 8)
            frame[25] = UInt8(checksum & 0xFF)
        }
        return frame
    }

    static func ipv6TCP(payload: Int, lsoStyle: Bool = false) -> [UInt8] {
        var frame = destination.bytes + source.bytes + [0x86, 0xDD]
        let length = 20 + payload
        frame += [0x60, 0, 0, 0, UInt8(truncatingIfNeeded: length >> 8), UInt8(length & 0xFF), 6, 64]
        frame += [UInt8](repeating: 0, count: 15) + [1] + [UInt8](repeating: 0, count: 15) + [2]
        frame += [0x30, 0x39, 0x00, 0x50] + be32(5000) + be32(1) + [0x50, 0x10, 0xFF, 0xFF, 0, 0, 0, 0]
        frame += (0..<payload).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        if lsoStyle {
            frame[18] = 0
            frame[19] = 0
        }
        return frame
    }

    static func ipv4UDP(payload: Int) -> [UInt8] {
        var frame = destination.bytes + source.bytes + [0x08, 0x00]
        let total = 20 + 8 + payload
        frame += [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
        let checksum = ~fold(sum(Array(frame[14..<34])))
        frame[24] = UInt8(checksum >> 8)
        frame[25] = UInt8(checksum & 0xFF)
        frame += [0x04, 0xD2, 0x16, 0x2E, UInt8((8 + payload) >> 8), UInt8((8 + payload) & 0xFF), 0, 0]
        frame += (0..<payload).map { UInt8(truncatingIfNeeded: $0) }
        return frame
    }

    static func be32(_ value: UInt32) -> [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: value >> $0) } }

    static func sum(_ bytes: [UInt8]) -> UInt32 {
        var total: UInt32 = 0
        var index = 0
        while index + 1 < bytes.count {
            total += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
            index += 2
        }
        if index < bytes.count { total += UInt32(bytes[index]) << 8 }
        return total
    }

    static func fold(_ value: UInt32) -> UInt16 {
        var total = value
        while total > 0xFFFF { total = (total & 0xFFFF) + (total >> 16) }
        return UInt16(total)
    }

    /// Whether the IPv4 header checksum and the TCP/UDP checksum of `frame` verify, using the
    /// IP length fields (which therefore must be right).
    static func checksumsValid(_ frame: [UInt8]) -> Bool {
        let etherType = UInt16(frame[12]) << 8 | UInt16(frame[13])
        if etherType == 0x0800 {
            let headerLength = Int(frame[14] & 0xF) * 4
            guard fold(sum(Array(frame[14..<(14 + headerLength)]))) == 0xFFFF else { return false }
            let total = Int(frame[16]) << 8 | Int(frame[17])
            let l4 = 14 + headerLength
            let segment = Array(frame[l4..<(14 + total)])
            let pseudo = sum(Array(frame[26..<34])) + UInt32(frame[23]) + UInt32(segment.count)
            return fold(pseudo + sum(segment)) == 0xFFFF
        }
        let payload = Int(frame[18]) << 8 | Int(frame[19])
        let segment = Array(frame[54..<(54 + payload)])
        let pseudo = sum(Array(frame[22..<54])) + UInt32(frame[20]) + UInt32(segment.count)
        return fold(pseudo + sum(segment)) == 0xFFFF
    }
}
