/// Mutations of valid inputs, the other half of every fuzzer here (the first is generating valid
/// inputs with random fields): bit flips, boundary values written over integers of every width,
/// truncation, extension, deletion and duplication of runs, and splices from other inputs.
public enum Mutator {
    /// Applies one to `maximum` random mutations to `bytes`.
    /// - Parameter corpus: other inputs to splice from.
    public static func mutate(_ bytes: inout [UInt8], random: inout FuzzRandom, maximum: Int = 4,
                              corpus: [[UInt8]] = []) {
        for _ in 0..<random.int(1...max(1, maximum)) {
            mutateOnce(&bytes, random: &random, corpus: corpus)
        }
    }

    /// `bytes` mutated (see `mutate`).
    public static func mutated(_ bytes: [UInt8], random: inout FuzzRandom, maximum: Int = 4,
                               corpus: [[UInt8]] = []) -> [UInt8] {
        var copy = bytes
        mutate(&copy, random: &random, maximum: maximum, corpus: corpus)
        return copy
    }

    private static func mutateOnce(_ bytes: inout [UInt8], random: inout FuzzRandom, corpus: [[UInt8]]) {
        if bytes.isEmpty {
            bytes = random.bytes(random.int(1...16))
            return
        }
        let position = random.int(0...(bytes.count - 1))
        switch random.int(0...9) {
        case 0:
            bytes[position] ^= UInt8(1) << UInt8(random.int(0...7))
        case 1:
            bytes[position] = random.pick([0, 1, 0x7F, 0x80, 0xFF, 0xFE, UInt8(truncatingIfNeeded: random.next())])
        case 2:
            overwrite(&bytes, at: position, with: random.interesting(UInt16.self))
        case 3:
            overwrite(&bytes, at: position, with: random.interesting(UInt32.self))
        case 4:
            overwrite(&bytes, at: position, with: random.interesting(UInt64.self))
        case 5:
            bytes.removeSubrange(random.int(0...bytes.count)...)
        case 6:
            bytes += random.bytes(random.int(1...64))
        case 7:
            let end = min(bytes.count, position + random.int(1...32))
            bytes.removeSubrange(position..<end)
        case 8:
            let end = min(bytes.count, position + random.int(1...32))
            bytes.insert(contentsOf: bytes[position..<end], at: random.int(0...bytes.count))
        default:
            guard let donor = corpus.isEmpty ? nil : random.pick(corpus), !donor.isEmpty else {
                bytes[position] = UInt8(truncatingIfNeeded: random.next())
                return
            }
            let start = random.int(0...(donor.count - 1))
            let run = donor[start..<min(donor.count, start + random.int(1...64))]
            let end = min(bytes.count, position + run.count)
            bytes.replaceSubrange(position..<end, with: run)
        }
    }

    /// Writes `value` little-endian at `offset`, as much of it as fits.
    private static func overwrite<T: FixedWidthInteger>(_ bytes: inout [UInt8], at offset: Int, with value: T) {
        for index in 0..<(T.bitWidth / 8) where offset + index < bytes.count {
            bytes[offset + index] = UInt8(truncatingIfNeeded: value >> T(8 * index))
        }
    }
}
