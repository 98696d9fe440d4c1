/// The fuzzers' random source: SplitMix64, so a seed replays a run exactly.
public struct FuzzRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The seed of the `index`th sub-run of a run seeded `seed` (each session of a target gets one).
    public static func derive(_ seed: UInt64, _ index: UInt64) -> UInt64 {
        var random = FuzzRandom(seed: seed ^ (index &* 0xD1B5_4A32_D192_ED03))
        return random.next()
    }

    /// `count` random bytes.
    public mutating func bytes(_ count: Int) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: max(0, count))
        var word: UInt64 = 0
        for index in result.indices {
            if index % 8 == 0 { word = next() }
            result[index] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(index % 8)))
        }
        return result
    }

    /// A number in `range`.
    public mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }

    /// True with probability `numerator`/`denominator`.
    public mutating func chance(_ numerator: Int, in denominator: Int) -> Bool {
        Int.random(in: 0..<denominator, using: &self) < numerator
    }

    /// One of `choices` (which must not be empty).
    public mutating func pick<T>(_ choices: [T]) -> T { choices[Int.random(in: 0..<choices.count, using: &self)] }

    /// A value the fuzzers favour: boundaries (0, 1, the maximum, powers of two and their
    /// neighbours) half of the time, anything otherwise.
    public mutating func interesting<T: FixedWidthInteger & UnsignedInteger>(_: T.Type = T.self) -> T {
        switch Int.random(in: 0..<8, using: &self) {
        case 0: return 0
        case 1: return 1
        case 2: return T.max
        case 3: return T.max - T(truncatingIfNeeded: Int.random(in: 0...16, using: &self))
        case 4: return T(1) << T(truncatingIfNeeded: Int.random(in: 0..<T.bitWidth, using: &self))
        case 5: return (T(1) << T(truncatingIfNeeded: Int.random(in: 0..<T.bitWidth, using: &self))) &- 1
        default: return T(truncatingIfNeeded: next())
        }
    }
}
