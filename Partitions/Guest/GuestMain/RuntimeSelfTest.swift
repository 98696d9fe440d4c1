import GuestKit

@_extern(c, "memcpy") func _memcpy(_ destination: UnsafeMutableRawPointer, _ source: UnsafeRawPointer, _ count: Int)
    -> UnsafeMutableRawPointer
@_extern(c, "memmove") func _memmove(_ destination: UnsafeMutableRawPointer, _ source: UnsafeRawPointer, _ count: Int)
    -> UnsafeMutableRawPointer
@_extern(c, "memset") func _memset(_ destination: UnsafeMutableRawPointer, _ value: Int32, _ count: Int)
    -> UnsafeMutableRawPointer

/// `mode=selftest`: checks the guest runtime's memcpy, memmove and memset (entry.S) over every
/// length up to 300 bytes at every alignment up to 16, plus page-sized copies, against values
/// computed from the byte index (never against another copy, which the compiler could turn into
/// a call to the routine under test), then times 4 KiB and 64 KiB copies and checks that the
/// sleep service wakes on its timer, time after time.
struct RuntimeSelfTest {
    let info: BootInfo

    private static let span = 1024
    private let buffer: UnsafeMutableRawPointer
    private let other: UnsafeMutableRawPointer

    init(info: BootInfo) {
        self.info = info
        PageAllocator.configure(start: info.freeMemoryStart + 4096, limit: info.memorySize)
        // 17 pages each: room for 64 KiB plus an unaligned start.
        guard let first = PageAllocator.allocate(pages: 17), let second = PageAllocator.allocate(pages: 17) else {
            print("selftest: FAIL no memory")
            CPU.park()
        }
        buffer = physical(first)
        other = physical(second)
    }

    /// The byte a buffer holds at `index` after `fill(_:seed:)`.
    private static func pattern(_ index: Int, seed: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: (index &* 131) ^ (index >> 8) &+ seed)
    }

    private func fill(_ pointer: UnsafeMutableRawPointer, seed: Int, count: Int = span) {
        for index in 0..<count { pointer.storeBytes(of: Self.pattern(index, seed: seed), toByteOffset: index, as: UInt8.self) }
    }

    /// Whether `pointer[index]` holds `expected(index)` for every index below `count`.
    private func holds(_ pointer: UnsafeMutableRawPointer, count: Int = span, _ expected: (Int) -> UInt8) -> Bool {
        for index in 0..<count where pointer.load(fromByteOffset: index, as: UInt8.self) != expected(index) {
            return false
        }
        return true
    }

    /// The sleep service (entry.S): twenty sleeps that can only end on the APIC timer, which
    /// is programmed once at start-up and whose interrupt returns through the short path that
    /// leaves its EOI to the service. Each must end on its own timer interrupt, no sooner than
    /// asked, and leave no vector in service. (kvm_pvm marks no vector in service and holds none
    /// back, as the development machines showed with the EOI removed, so there only the count
    /// and the times can fail; on hardware a missing EOI also fails the in-service check.)
    private func sleepCheck(_ clock: Clock) {
        let wakesBefore = SynICClient.interruptCount(slot: 3)
        var shortest = UInt64.max
        var longest: UInt64 = 0
        var inService: UInt32 = 0
        for _ in 0..<20 {
            let start = CPU.timestamp()
            CPU.sleep(nanoseconds: 1_000_000)
            let slept = clock.nanoseconds(from: start, to: CPU.timestamp())
            shortest = min(shortest, slept)
            longest = max(longest, slept)
            inService |= CPU.inServiceHigh()
        }
        let wakes = SynICClient.interruptCount(slot: 3) &- wakesBefore
        // 0.9 ms: the TSC's calibrated rate and the APIC timer's may differ by a little.
        if wakes == 20, shortest >= 900_000, longest < 500_000_000, inService == 0 {
            print("selftest: sleep ok wakes=\(wakes) shortest=\(shortest) ns")
        } else {
            print("selftest: FAIL sleep wakes=\(wakes) shortest=\(shortest) ns longest=\(longest) ns in_service=\(inService)")
        }
    }

    func run() -> Never {
        var failures = 0
        func check(_ passed: Bool, _ what: String, _ length: Int, _ a: Int, _ b: Int) {
            if !passed, failures < 10 { print("selftest: FAIL \(what) length=\(length) at \(a) \(b)") }
            if !passed { failures += 1 }
        }
        for length in 0...300 {
            for sourceOffset in 0..<16 {
                for destinationOffset in 0..<16 {
                    // memcpy between two buffers: the copied range and nothing else changes.
                    fill(buffer, seed: 1)
                    fill(other, seed: 2)
                    _ = _memcpy(other + 64 + destinationOffset, buffer + 64 + sourceOffset, length)
                    check(holds(other) { index in
                        let relative = index - 64 - destinationOffset
                        return relative >= 0 && relative < length
                            ? Self.pattern(64 + sourceOffset + relative, seed: 1) : Self.pattern(index, seed: 2)
                    }, "memcpy", length, sourceOffset, destinationOffset)
                }
                // memmove within one buffer, the destination before and after the source.
                for shift in [-40, -9, -8, -1, 1, 7, 8, 33] {
                    let source = 400 + sourceOffset
                    let destination = source + shift
                    fill(buffer, seed: 3)
                    _ = _memmove(buffer + destination, buffer + source, length)
                    check(holds(buffer) { index in
                        let relative = index - destination
                        return relative >= 0 && relative < length
                            ? Self.pattern(source + relative, seed: 3) : Self.pattern(index, seed: 3)
                    }, "memmove", length, sourceOffset, shift)
                }
            }
            for offset in 0..<16 {
                fill(buffer, seed: 4)
                _ = _memset(buffer + 64 + offset, 0x1A5, length)  // only the low byte counts
                check(holds(buffer) { index in
                    let relative = index - 64 - offset
                    return relative >= 0 && relative < length ? 0xA5 : Self.pattern(index, seed: 4)
                }, "memset", length, offset, 0)
            }
        }
        // Page-sized copies, aligned and not.
        for (length, offset) in [(4096, 0), (4096, 3), (65536, 0), (65536, 8)] {
            fill(buffer, seed: 5, count: length)
            fill(other, seed: 6, count: length + 64)
            _ = _memcpy(other + offset, buffer, length)
            check(holds(other, count: length + 64) { index in
                index >= offset && index < offset + length ? Self.pattern(index - offset, seed: 5) : Self.pattern(index, seed: 6)
            }, "memcpy", length, 0, offset)
        }
        print(failures == 0 ? "selftest: memcpy memmove memset ok" : "selftest: FAIL \(failures) checks")

        let clock = Clock(tscFrequencyHz: info.tscFrequencyHz)
        for length in [4096, 65536] {
            var samples: [UInt64] = []
            for _ in 0..<101 {
                let start = CPU.timestamp()
                _ = _memcpy(other, buffer, length)
                samples.append(clock.nanoseconds(from: start, to: CPU.timestamp()))
            }
            samples.sort()
            print("selftest: memcpy \(length) B p50=\(samples[50]) ns")
        }
        sleepCheck(clock)
        print("selftest: done")
        CPU.park()
    }
}
