import GuestMemory
import LinuxSupport

/// Random-access throughput of a disk queue: the same pattern fio's `randread`/`randwrite`
/// jobs run (block-aligned uniformly random offsets over the whole file, a fixed number of
/// requests in flight), driven the way a channel worker drives a queue: requests committed in
/// groups as they are submitted and the rest once per pass, completions reaped, and a sleep on
/// the completion eventfd only when nothing is ready.
public struct DiskBenchmark: Sendable {
    public enum Pattern: String, Sendable {
        case randomRead = "randread"
        case randomWrite = "randwrite"
    }

    public struct Configuration: Sendable {
        public var path: String
        public var pattern: Pattern
        public var blockSize: Int
        public var queueDepth: Int
        public var seconds: Double
        public var engine: DiskEngineKind
        public var direct: Bool
        public var seed: UInt64
        /// How long the loop keeps polling for completions before it sleeps (the channel
        /// worker's idle spin, `ChannelWorker.spinNanoseconds`, is 30 µs).
        public var pollNanoseconds: UInt64 = 30_000

        public init(path: String, pattern: Pattern, blockSize: Int = 4096, queueDepth: Int = 32, seconds: Double = 10,
                    engine: DiskEngineKind = .default, direct: Bool = false, seed: UInt64 = 0x5EED) {
            self.path = path
            self.pattern = pattern
            self.blockSize = blockSize
            self.queueDepth = queueDepth
            self.seconds = seconds
            self.engine = engine
            self.direct = direct
            self.seed = seed
        }
    }

    public struct Result: Sendable, CustomStringConvertible {
        public var operations: Int
        public var seconds: Double
        public var iops: Double { Double(operations) / seconds }

        public var description: String {
            "\(operations) operations in \(seconds) s: \(Int(iops.rounded())) IOPS"
        }
    }

    /// Runs the benchmark on an existing image (fill it first, or reads only see holes).
    public static func run(_ configuration: Configuration) throws(SystemError) -> Result {
        let image = try DiskImage(path: configuration.path, access: configuration.pattern == .randomRead ? .readOnly : .readWrite,
                                  direct: configuration.direct)
        let depth = max(configuration.queueDepth, 1)
        let blockSize = max(configuration.blockSize, 512)
        let pages = (depth * blockSize + 4095) / 4096
        // Buffers come from guest-RAM-like memory, as a VSP's do.
        let memory = try GuestMemory.create(name: "disk-bench", size: pages * 4096)
        let queue = try DiskQueue(image: image, depth: depth, engine: configuration.engine)
        let blocks = image.size / UInt64(blockSize)
        var random = configuration.seed
        func nextOffset() -> UInt64 {
            random &+= 0x9E37_79B9_7F4A_7C15
            var z = random
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return ((z ^ (z >> 31)) % blocks) * UInt64(blockSize)
        }
        func request(_ slot: Int) throws(SystemError) -> DiskRequest {
            let buffers: GuestIOVectors
            do {
                buffers = try memory.ioVectors([GuestMemorySegment(pageNumber: UInt64(slot * blockSize / 4096), offset: 0,
                                                                    length: UInt32(blockSize))])
            } catch {
                throw SystemError("map benchmark buffer \(slot): \(error)", errno: .badAddress)
            }
            let operation: DiskRequest.Operation = configuration.pattern == .randomRead
                ? .read(offset: nextOffset(), buffers: buffers)
                : .write(offset: nextOffset(), buffers: buffers, forceUnitAccess: false)
            return DiskRequest(tag: UInt64(slot), operation: operation)
        }
        func submit(_ slot: Int) throws(SystemError) {
            let next = try request(slot)
            do throws(DiskQueueError) {
                try queue.submit(next)
            } catch {
                throw SystemError("submit benchmark request: \(error)", errno: .ioError)
            }
        }
        for slot in 0..<depth { try submit(slot) }
        try queue.commit()
        let start = MonotonicClock.nanoseconds()
        let end = start &+ UInt64(configuration.seconds * 1e9)
        var operations = 0
        var now = start
        var idleSince = now
        while now < end {
            var done = queue.reap()
            // As a channel worker does, poll a little before sleeping on the eventfd: waking a
            // sleeping thread costs more than a few empty passes.
            if done.isEmpty, now &- idleSince >= configuration.pollNanoseconds {
                done = try queue.waitForCompletions(timeoutMilliseconds: 1000)
            }
            if !done.isEmpty { idleSince = MonotonicClock.nanoseconds() }
            for completion in done {
                if case .failure(let error) = completion.result { throw error }
                operations += 1
                try submit(Int(completion.tag))
                try queue.commitIfGroupFull()
            }
            try queue.commit()
            now = MonotonicClock.nanoseconds()
        }
        let elapsed = Double(now - start) / 1e9
        while queue.inFlight > 0 { _ = try queue.waitForCompletions(timeoutMilliseconds: 5000) }
        return Result(operations: operations, seconds: elapsed)
    }
}
