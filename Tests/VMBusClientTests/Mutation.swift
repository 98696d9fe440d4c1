import TestSupport

extension SeededGenerator {
    /// A mutation of `valid`: bytes flipped, cut short, grown, its msgtype word replaced, or
    /// nothing (a third of the time), or entirely random bytes now and then.
    mutating func mutate(_ valid: [UInt8]) -> [UInt8] {
        var bytes = valid
        switch Int.random(in: 0..<9, using: &self) {
        case 0, 1, 2:
            break
        case 3:
            for _ in 0..<Int.random(in: 1...4, using: &self) where !bytes.isEmpty {
                bytes[Int.random(in: 0..<bytes.count, using: &self)] ^= UInt8.random(in: 1...255, using: &self)
            }
        case 4:
            bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &self)))
        case 5:
            bytes += self.bytes(Int.random(in: 1...64, using: &self))
        case 6:
            if bytes.count >= 4 {
                let type = UInt32.random(in: 0...30, using: &self)
                for index in 0..<4 { bytes[index] = UInt8(truncatingIfNeeded: type >> (8 * UInt32(index))) }
            }
        case 7:
            // A plausible small value in a random aligned word: relids, handles, counts.
            if bytes.count >= 12 {
                let offset = Int.random(in: 2..<(bytes.count / 4), using: &self) * 4
                let value = UInt32.random(in: 0...8, using: &self)
                for index in 0..<4 where offset + index < bytes.count {
                    bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(index)))
                }
            }
        default:
            bytes = self.bytes(Int.random(in: 0...260, using: &self))
        }
        return bytes
    }
}
