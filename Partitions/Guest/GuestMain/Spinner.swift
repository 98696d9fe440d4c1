import GuestKit
import HyperV

/// `mode=spin`: a CPU-bound guest for the scheduler benchmark. Every processor spins; the
/// bootstrap processor prints its progress every `report-ms` (default 1000) of reference time:
///
///     spin: 123456789 iterations at reference time 20000000
///
/// so a host can tell the guest's own rate from the processor time the root gave it.
struct Spinner {
    let info: BootInfo

    /// Where the loop's result goes, so the compiler cannot drop the loop.
    nonisolated(unsafe) static var sink: UInt64 = 0

    func run() -> Never {
        let interval = UInt64(max(10, info.integer("report-ms", default: 1000))) * 10_000
        print("spin: spinning on \(info.processorCount) processor(s), reporting every \(interval / 10_000) ms")
        var iterations: UInt64 = 0
        var next = (Clock.referenceTimeFromPage()?.time ?? 0) &+ interval
        while true {
            Self.sink = Self.spin(4096, seed: iterations)
            iterations &+= 4096
            let now = Clock.referenceTimeFromPage()?.time ?? 0
            if now >= next {
                print("spin: \(iterations) iterations at reference time \(now)")
                next = now &+ interval
            }
        }
    }

    /// The work of `count` iterations: a chain of dependent xorshift steps.
    @inline(never)
    static func spin(_ count: Int, seed: UInt64) -> UInt64 {
        var state = seed | 1
        for _ in 0..<count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
        }
        return state
    }

    /// An application processor's part: spin, without printing.
    static func spinForever() -> Never {
        var seed: UInt64 = 1
        while true { seed = spin(4096, seed: seed) }
    }

    /// Whether the boot arguments at `bootInfoAddress` hold the word `mode=spin`, read without
    /// allocating (application processors must not use the heap while the bootstrap one does).
    static func requested(bootInfoAddress: UInt64) -> Bool {
        let page = physical(bootInfoAddress)
        guard page.load(fromByteOffset: GuestBootInfo.magicOffset, as: UInt32.self) == GuestBootInfo.magic else { return false }
        let length = min(Int(page.load(fromByteOffset: GuestBootInfo.argumentsLengthOffset, as: UInt32.self)),
                         GuestBootInfo.maximumArgumentsLength)
        let word: StaticString = "mode=spin"
        let wordLength = word.utf8CodeUnitCount
        var start = 0
        while start + wordLength <= length {
            let atWordStart = start == 0
                || page.load(fromByteOffset: GuestBootInfo.argumentsOffset + start - 1, as: UInt8.self) == 0x20
            var matches = atWordStart
            var index = 0
            while matches && index < wordLength {
                matches = page.load(fromByteOffset: GuestBootInfo.argumentsOffset + start + index, as: UInt8.self)
                    == word.utf8Start[index]
                index += 1
            }
            let end = start + wordLength
            if matches && (end == length
                || page.load(fromByteOffset: GuestBootInfo.argumentsOffset + end, as: UInt8.self) == 0x20) {
                return true
            }
            start += 1
        }
        return false
    }
}
