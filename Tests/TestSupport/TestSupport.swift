/// Helpers shared by the test targets.

import FuzzSupport

/// The deterministic generator randomized tests use, so they replay exactly: the fuzzers' own.
public typealias SeededGenerator = FuzzRandom

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
