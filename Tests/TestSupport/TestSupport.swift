/// Helpers shared by the test targets.

/// A small deterministic generator (SplitMix64) so randomized tests replay exactly.
public struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) }
    }
}

/// Hex string of a byte array, for readable expectations.
public func hex(_ bytes: [UInt8]) -> String {
    bytes.map { byte in
        let digits = String(byte, radix: 16)
        return digits.count == 1 ? "0" + digits : digits
    }.joined()
}

/// Reads a little-endian integer from test bytes, trapping the test (not the code) on misuse.
public func le<T: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int, as _: T.Type = T.self) -> T {
    var value: T = 0
    for index in (0..<(T.bitWidth / 8)).reversed() { value = value << 8 | T(truncatingIfNeeded: bytes[offset + index]) }
    return value
}
