import GuestKit
import IDEVSC
import StorageVSC

/// The guest's own pages as the storage drivers see them: identity-mapped, so an address is a
/// pointer. SAFETY: every address comes from `PageAllocator` (pages of this guest's free RAM,
/// allocated for the buffer), and lengths stay within what was allocated.
struct GuestBufferMemory: StorageBufferMemory {
    func read(at address: UInt64, count: Int) -> [UInt8] {
        let source = physical(address)
        var bytes = [UInt8](repeating: 0, count: count)
        for index in 0..<count { bytes[index] = source.load(fromByteOffset: index, as: UInt8.self) }
        return bytes
    }

    func fillPattern(at address: UInt64, length: Int, diskOffset: UInt64, seed: UInt64) {
        let words = physical(address).assumingMemoryBound(to: UInt64.self)
        for index in 0..<(length / 8) {
            words[index] = StoragePattern.word(at: diskOffset &+ UInt64(index * 8), seed: seed)
        }
    }

    func checkPattern(at address: UInt64, length: Int, diskOffset: UInt64, seed: UInt64) -> Bool {
        let words = physical(address).assumingMemoryBound(to: UInt64.self)
        for index in 0..<(length / 8) where words[index] != StoragePattern.word(at: diskOffset &+ UInt64(index * 8), seed: seed) {
            return false
        }
        return true
    }
}

/// Port I/O from CPL3 for the ATA driver: `in`/`out`, and string instructions straight into the
/// driver's buffers — 32-bit ones (REP INSL/OUTSL, which the emulated channel decodes as two
/// words, as PCI IDE controllers with 32-bit PIO do) unless `wordsOnly`: KVM exits once per
/// element of a REP OUTS, so doublewords halve a write's exits.
struct GuestATAPorts: ATAPortIO {
    let clock: Clock
    var wordsOnly = false

    mutating func in8(_ port: UInt16) -> UInt8 { CPU.in8(port) }
    mutating func out8(_ port: UInt16, _ value: UInt8) { CPU.out8(port, value) }

    mutating func inWords(_ port: UInt16, into buffer: inout [UInt8], offset: Int, words: Int) {
        guard words > 0, offset >= 0, offset + 2 * words <= buffer.count else { return }
        let doublewords = !wordsOnly && words % 2 == 0
        buffer.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return }
            if doublewords {
                CPU.inDoublewords(port, into: base + offset, count: words / 2)
            } else {
                CPU.inWords(port, into: base + offset, words: words)
            }
        }
    }

    mutating func outWords(_ port: UInt16, from buffer: [UInt8], offset: Int, words: Int) {
        guard words > 0, offset >= 0, offset + 2 * words <= buffer.count else { return }
        let doublewords = !wordsOnly && words % 2 == 0
        buffer.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            if doublewords {
                CPU.outDoublewords(port, from: base + offset, count: words / 2)
            } else {
                CPU.outWords(port, from: base + offset, words: words)
            }
        }
    }

    func timestamp() -> UInt64 { CPU.timestamp() }
    func ticks(nanoseconds: UInt64) -> UInt64 { clock.ticks(nanoseconds: nanoseconds) }
}

extension ATADriver {
    /// Runs `workload` on the emulated disk: one command at a time (an IDE channel has no
    /// queue), whatever the queue depth asks, for the workload's duration.
    mutating func run(_ workload: StorageWorkload, clock: Clock, buffer: inout [UInt8]) -> StorageWorkloadResult {
        var result = StorageWorkloadResult()
        let sectorsPerRequest = workload.blockSize / 512
        guard sectorsPerRequest > 0, buffer.count >= workload.blockSize else { return result }
        var offsets = StorageWorkload.Offsets(workload)
        var samples = LatencySamples()
        let begin = CPU.timestamp()
        let end = begin &+ clock.ticks(nanoseconds: workload.durationNanoseconds)
        // At least one request, even when the vCPU was descheduled past the whole window.
        repeat {
            let lba = offsets.take() / 512
            let started = CPU.timestamp()
            var done = 0
            var succeeded = true
            // READ/WRITE MULTIPLE EXT moves up to 65,536 sectors per command; keep commands at 1 MiB.
            while done < sectorsPerRequest, succeeded {
                let count = min(sectorsPerRequest - done, 2048)
                succeeded = workload.pattern.isWrite
                    ? write(lba: lba + UInt64(done), count: count, from: buffer, offset: done * 512)
                    : read(lba: lba + UInt64(done), count: count, into: &buffer, offset: done * 512)
                done += count
            }
            samples.add(CPU.timestamp() &- started)
            if succeeded {
                result.operations += 1
                result.bytes &+= UInt64(workload.blockSize)
            } else {
                result.failures += 1
            }
        } while CPU.timestamp() < end
        result.nanoseconds = clock.nanoseconds(from: begin, to: CPU.timestamp())
        let percentiles = samples.percentiles([50, 99])
        result.p50Nanoseconds = clock.nanoseconds(from: 0, to: percentiles[0])
        result.p99Nanoseconds = clock.nanoseconds(from: 0, to: percentiles[1])
        return result
    }
}
