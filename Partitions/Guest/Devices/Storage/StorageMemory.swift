/// The guest memory a storage driver's buffers live in, as the driver needs it: the guest fills
/// and checks its own pages by address; the host's tests do the same in the partition's RAM.
public protocol StorageBufferMemory {
    /// The `count` bytes at guest-physical `address`.
    func read(at address: UInt64, count: Int) -> [UInt8]
    /// Fills `length` bytes at `address` with the data pattern of disk bytes
    /// `diskOffset ..< diskOffset + length` under `seed` (`StoragePattern`).
    func fillPattern(at address: UInt64, length: Int, diskOffset: UInt64, seed: UInt64)
    /// Whether the `length` bytes at `address` hold that pattern.
    func checkPattern(at address: UInt64, length: Int, diskOffset: UInt64, seed: UInt64) -> Bool
}

/// The data the guest writes to verify a disk: every 8-byte word is a function of its disk byte
/// offset and a seed, so any block read back — through any controller, or from the image file on
/// the host — can be checked on its own.
public enum StoragePattern {
    /// The word at disk byte offset `offset` (a multiple of 8) under `seed` (SplitMix64's
    /// finalizer of both).
    @inline(__always)
    public static func word(at offset: UInt64, seed: UInt64) -> UInt64 {
        var z = (offset >> 3) &+ seed &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The pattern of `count` disk bytes from `offset` (both multiples of 8).
    public static func bytes(at offset: UInt64, count: Int, seed: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var index = 0
        while index + 8 <= count {
            let value = word(at: offset &+ UInt64(index), seed: seed)
            for shift in 0..<8 { bytes[index + shift] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(shift))) }
            index += 8
        }
        return bytes
    }
}
