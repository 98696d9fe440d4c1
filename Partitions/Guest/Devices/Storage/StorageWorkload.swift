import HyperV
import StorageProtocol
import VMBusClient
import VMBusProtocol

/// An I/O pattern as fio describes one: sequential or uniformly random block-aligned offsets
/// over a region of the disk, a block size, and a fixed number of requests in flight, for a
/// fixed time.
public struct StorageWorkload {
    public enum Pattern: Equatable {
        case read, write, randomRead, randomWrite

        public var isWrite: Bool { self == .write || self == .randomWrite }
        public var isRandom: Bool { self == .randomRead || self == .randomWrite }
        /// fio's `--rw` name.
        public var name: String {
            switch self {
            case .read: "read"
            case .write: "write"
            case .randomRead: "randread"
            case .randomWrite: "randwrite"
            }
        }

        /// The pattern fio calls `name`.
        public init?(name: Substring) {
            switch name {
            case "read": self = .read
            case "write": self = .write
            case "randread": self = .randomRead
            case "randwrite": self = .randomWrite
            default: return nil
            }
        }
    }

    public var pattern: Pattern
    /// Bytes per request, a multiple of the disk's block size.
    public var blockSize: Int
    public var queueDepth: Int
    public var durationNanoseconds: UInt64
    /// The workload touches disk bytes `0 ..< regionBytes`.
    public var regionBytes: UInt64
    public var seed: UInt64

    public init(pattern: Pattern, blockSize: Int, queueDepth: Int, durationNanoseconds: UInt64, regionBytes: UInt64,
                seed: UInt64 = 0x5EED) {
        self.pattern = pattern
        self.blockSize = blockSize
        self.queueDepth = queueDepth
        self.durationNanoseconds = durationNanoseconds
        self.regionBytes = regionBytes
        self.seed = seed
    }

    /// The offsets it visits, one per request.
    public struct Offsets {
        let workload: StorageWorkload
        var next: UInt64 = 0
        var random: UInt64

        public init(_ workload: StorageWorkload) {
            self.workload = workload
            random = workload.seed
        }

        public mutating func take() -> UInt64 {
            let block = UInt64(max(workload.blockSize, 1))
            let blocks = max(workload.regionBytes / block, 1)
            if workload.pattern.isRandom {
                random &+= 0x9E37_79B9_7F4A_7C15
                var z = random
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                return ((z ^ (z >> 31)) % blocks) * block
            }
            let offset = next
            next = (next + block) % (blocks * block)
            return offset
        }
    }
}

/// What a workload measured.
public struct StorageWorkloadResult {
    public var operations = 0
    public var bytes: UInt64 = 0
    public var nanoseconds: UInt64 = 0
    /// Median and 99th-percentile request latency (submission to completion seen).
    public var p50Nanoseconds: UInt64 = 0
    public var p99Nanoseconds: UInt64 = 0
    /// Requests that completed with an error.
    public var failures = 0

    public init() {}
}

/// Keeps at most `capacity` latency samples (every one while there is room, then each new one
/// replaces an old one in turn) and gives their percentiles.
public struct LatencySamples {
    var samples: [UInt64] = []
    var seen = 0
    let capacity: Int

    public init(capacity: Int = 1 << 17) {
        self.capacity = max(1, capacity)
        samples.reserveCapacity(min(self.capacity, 4096))
    }

    public mutating func add(_ value: UInt64) {
        if samples.count < capacity {
            samples.append(value)
        } else {
            samples[seen % capacity] = value
        }
        seen += 1
    }

    /// The `percent`th percentile (nearest rank), 0 without samples.
    public func percentiles(_ percents: [Int]) -> [UInt64] {
        guard !samples.isEmpty else { return percents.map { _ in 0 } }
        let sorted = samples.sorted()
        return percents.map { percent in
            sorted[min(sorted.count - 1, max(0, (sorted.count * percent + 99) / 100 - 1))]
        }
    }
}

extension StorageWorkload {
    /// Runs the workload on one disk over `vscs` (the primary channel and its sub-channels),
    /// each queue slot bound to one channel (slot modulo the channel count, as Linux's storvsc
    /// binds each CPU's queue to one channel), `queueDepth` in flight. `buffers` holds one guest
    /// buffer address per queue slot, each at least `blockSize` bytes; write data is whatever
    /// they hold. While requests are in flight the VSC polls its rings (their interrupts masked);
    /// when nothing arrives for `spinNanoseconds` it unmasks them and calls `idle`, which should
    /// wait for the channel interrupt (with a bound).
    public func run<Channel: VMBusChannel>(disk: StorageDiskInfo, on vscs: inout [StorageVSC<Channel>], buffers: [UInt64],
                                           spinNanoseconds: UInt64 = 2_000_000, idle: () -> Void) -> StorageWorkloadResult {
        var result = StorageWorkloadResult()
        let depth = min(max(queueDepth, 1), buffers.count)
        guard !vscs.isEmpty, depth > 0, blockSize > 0, blockSize % max(disk.blockSize, 1) == 0 else { return result }
        if let limit = vscs[0].properties?.maximumTransferBytes, blockSize > Int(limit) {
            // One request per block: larger ones than the controller takes cannot run.
            result.failures = 1
            return result
        }
        let ranges = buffers.prefix(depth).map { GPARange(address: $0, length: blockSize) }
        let blocks = UInt32(blockSize / disk.blockSize)
        var offsets = Offsets(self)
        var samples = LatencySamples()
        var started = [UInt64](repeating: 0, count: depth)
        var free: [Int] = Array((0..<depth).reversed())
        var inFlight = 0
        let clock = vscs[0].channel
        for index in vscs.indices { vscs[index].channel.beginPolling() }
        let begin = clock.timestamp()
        let end = begin &+ clock.ticks(nanoseconds: durationNanoseconds)
        var quietSince: UInt64?
        var staged = [Bool](repeating: false, count: vscs.count)
        while true {
            let now = clock.timestamp()
            // At least one request, even when the vCPU was descheduled past the whole window.
            let running = now < end || result.operations + result.failures + inFlight == 0
            if !running && inFlight == 0 { break }
            // Fill the queue; a slot's requests always go to its own channel, so a shallow queue
            // keeps one channel busy rather than waking every channel's worker in turn.
            for index in staged.indices { staged[index] = false }
            while running, let slot = free.last {
                let channel = slot % vscs.count
                let offset = offsets.take()
                let request = StorageRequest.transfer(write: pattern.isWrite, target: disk.target, lun: disk.lun,
                                                      lba: offset / UInt64(disk.blockSize), blocks: blocks, buffer: ranges[slot])
                guard vscs[channel].stage(request, tag: UInt64(slot)) else { break }
                started[slot] = clock.timestamp()
                free.removeLast()
                inFlight += 1
                staged[channel] = true
            }
            for index in vscs.indices where staged[index] { vscs[index].publish() }
            // Reap.
            var completed = 0
            for index in vscs.indices {
                completed += vscs[index].poll { completion in
                    let slot = Int(completion.tag)
                    guard slot < depth else { return }
                    samples.add(clock.timestamp() &- started[slot])
                    if completion.succeeded {
                        result.operations += 1
                        result.bytes &+= UInt64(blockSize)
                    } else {
                        result.failures += 1
                    }
                    free.append(slot)
                    inFlight -= 1
                }
            }
            if completed > 0 {
                quietSince = nil
                continue
            }
            let quiet = quietSince ?? now
            quietSince = quiet
            if clock.nanoseconds(from: quiet, to: now) < spinNanoseconds {
                clock.relax()
                continue
            }
            // Idle: unmask, and wait for the interrupt unless something slipped in.
            var arrived = false
            for index in vscs.indices where vscs[index].channel.endPolling() { arrived = true }
            if !arrived { idle() }
            for index in vscs.indices { vscs[index].channel.beginPolling() }
            quietSince = nil
        }
        for index in vscs.indices { _ = vscs[index].channel.endPolling() }
        result.nanoseconds = clock.nanoseconds(from: begin, to: clock.timestamp())
        let percentiles = samples.percentiles([50, 99])
        result.p50Nanoseconds = clock.nanoseconds(from: 0, to: percentiles[0])
        result.p99Nanoseconds = clock.nanoseconds(from: 0, to: percentiles[1])
        return result
    }
}

/// What a verification pass found.
public struct StorageVerification {
    public var bytesWritten: UInt64 = 0
    public var bytesChecked: UInt64 = 0
    /// Chunks that read back differently, or requests that failed.
    public var mismatches = 0
    public var failures = 0
    public var flushed = false

    public init() {}
    public var passed: Bool { mismatches == 0 && failures == 0 && bytesChecked > 0 }
}

extension StorageVSC {
    /// Writes the pattern of `seed` over disk bytes `0 ..< regionBytes` in `chunk`-byte requests
    /// (`write`), makes it durable with SYNCHRONIZE CACHE (`flush`), and reads it back and checks
    /// it (`check`); `buffer` is a guest buffer of at least `chunk` bytes.
    public mutating func verify<Memory: StorageBufferMemory>(disk: StorageDiskInfo, regionBytes: UInt64, chunk: Int, seed: UInt64,
                                                             buffer: UInt64, memory: Memory, write: Bool = true,
                                                             flush: Bool = true, check: Bool = true) -> StorageVerification {
        var result = StorageVerification()
        guard chunk > 0, chunk % disk.blockSize == 0 else { return result }
        let range = GPARange(address: buffer, length: chunk)
        var offset: UInt64 = 0
        while write, offset + UInt64(chunk) <= regionBytes {
            memory.fillPattern(at: buffer, length: chunk, diskOffset: offset, seed: seed)
            let request = StorageRequest.transfer(write: true, target: disk.target, lun: disk.lun,
                                                  lba: offset / UInt64(disk.blockSize), blocks: UInt32(chunk / disk.blockSize),
                                                  buffer: range)
            if run(request)?.succeeded == true { result.bytesWritten += UInt64(chunk) } else { result.failures += 1 }
            offset += UInt64(chunk)
        }
        if flush {
            result.flushed = run(.synchronizeCache(target: disk.target, lun: disk.lun))?.succeeded == true
            if !result.flushed { result.failures += 1 }
        }
        offset = 0
        while check, offset + UInt64(chunk) <= regionBytes {
            memory.fillPattern(at: buffer, length: chunk, diskOffset: offset, seed: ~seed)
            let request = StorageRequest.transfer(write: false, target: disk.target, lun: disk.lun,
                                                  lba: offset / UInt64(disk.blockSize), blocks: UInt32(chunk / disk.blockSize),
                                                  buffer: range)
            if let completion = run(request), completion.succeeded {
                if memory.checkPattern(at: buffer, length: chunk, diskOffset: offset, seed: seed) {
                    result.bytesChecked += UInt64(chunk)
                } else {
                    result.mismatches += 1
                }
            } else {
                result.failures += 1
            }
            offset += UInt64(chunk)
        }
        return result
    }
}
