import Foundation
import LinuxSupport
import NetworkProtocol
import NetworkVSC
import Synchronization

/// A flag one thread sets and others read.
final class BenchFlag: Sendable {
    private let value = Atomic<Bool>(false)
    init() {}
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }

    /// Waits up to `seconds` for the flag.
    func wait(seconds: Double) -> Bool {
        let deadline = MonotonicClock.nanoseconds() + UInt64(seconds * 1e9)
        while !isSet && MonotonicClock.nanoseconds() < deadline { MonotonicClock.sleep(.milliseconds(1)) }
        return isSet
    }
}

/// What one receiver counted of one frame size.
public struct FrameTally: Sendable, Equatable {
    public var size: Int
    public var frames = 0
    /// CLOCK_MONOTONIC nanoseconds of the first and last frame (a burst counted on a host
    /// interface starts at the last sample before its first frame).
    public var first: UInt64 = 0
    public var last: UInt64 = 0

    public init(size: Int) { self.size = size }

    /// Nanoseconds the sender took to send this size's frames, if known.
    public var sendNanoseconds: UInt64 = 0

    /// The delivered rate: frames received over the longer of the receive window (first to last
    /// frame) and the send window. A receiver that drops most of what it is offered and then
    /// drains a queued burst would otherwise look fast.
    public var framesPerSecond: Double {
        let window = max(last > first ? last - first : 0, sendNanoseconds)
        guard frames > 1, window > 0 else { return 0 }
        return Double(frames) / (Double(window) / 1e9)
    }
}

/// The host's ends of the network bench: bench frames (`BenchFrame`, the guest's format) written
/// to or read from a descriptor by a thread, and an interface's receive counter sampled.
enum HostFrames {
    /// Writes `count` bench frames of each of `sizes` from `source` to `destination` through
    /// `descriptor` (a TAP with `header` before each frame, or a packet socket with none),
    /// pausing `gap` between sizes; a write that would block is retried.
    /// - Returns: the frames written per size, and the nanoseconds that took.
    static func send(on descriptor: OwnedDescriptor, header: [UInt8], sizes: [Int], count: Int, from source: MACAddress,
                     to destination: MACAddress, gap: Duration, stop: BenchFlag) throws(SystemError)
        -> [(frames: Int, nanoseconds: UInt64)]
    {
        var written: [(frames: Int, nanoseconds: UInt64)] = []
        for size in sizes {
            let start = MonotonicClock.nanoseconds()
            var frame = BenchFrame.make(from: source, to: destination, size: size, sequence: 0)
            var sent = 0
            var refused = 0
            while sent < count && !stop.isSet {
                BenchFrame.stamp(&frame, sequence: UInt64(sent))
                if try FrameIO.write(descriptor, header: header, frame: frame) {
                    sent += 1
                } else {
                    refused += 1
                    if refused % 64 == 0 { MonotonicClock.sleep(.microseconds(20)) }
                }
            }
            written.append((sent, MonotonicClock.nanoseconds() - start))
            MonotonicClock.sleep(gap)
        }
        return written
    }

    /// Reads frames from `descriptor` (each after `headerSize` bytes of header) and counts the
    /// bench frames of each size, until `count` of every size arrived, nothing arrived for
    /// `idle` after the first frame, `timeout` passed before it, or `stop` is set.
    static func receive(on descriptor: OwnedDescriptor, headerSize: Int, sizes: [Int], count: Int, idle: Duration,
                        timeout: Duration, ready: BenchFlag? = nil, stop: BenchFlag) throws(SystemError) -> [FrameTally] {
        var tallies = sizes.map { FrameTally(size: $0) }
        var buffer = [UInt8](repeating: 0, count: 70_000)
        let start = MonotonicClock.nanoseconds()
        var lastFrame: UInt64 = 0
        let idleNanoseconds = MonotonicClock.nanoseconds(in: idle)
        let timeoutNanoseconds = MonotonicClock.nanoseconds(in: timeout)
        ready?.set()
        while !stop.isSet {
            if tallies.allSatisfy({ $0.frames >= count }) { break }
            let now = MonotonicClock.nanoseconds()
            if lastFrame == 0 && now - start > timeoutNanoseconds { break }
            if lastFrame != 0 && now - lastFrame > idleNanoseconds { break }
            guard try Poll.wait(on: [descriptor.rawValue], timeoutMilliseconds: 50)[0] else { continue }
            while let length = try FrameIO.read(descriptor, into: &buffer) {
                guard length >= headerSize + BenchFrame.minimumSize else { continue }
                let prefix = Array(buffer[headerSize..<(headerSize + BenchFrame.minimumSize)])
                guard let (size, _) = BenchFrame.parse(prefix, length: length - headerSize),
                      let index = tallies.firstIndex(where: { $0.size == size }) else { continue }
                let stamp = MonotonicClock.nanoseconds()
                if tallies[index].frames == 0 { tallies[index].first = stamp }
                tallies[index].frames += 1
                tallies[index].last = stamp
                lastFrame = stamp
            }
        }
        return tallies
    }

    /// Samples an interface's rx_packets counter every millisecond and cuts the time into bursts
    /// (`BurstCutter`): one burst per size the sender sent, in order.
    static func sampleBursts(_ counter: SysfsCounter, sizes: [Int], minimumFrames: Int, gap: Duration, timeout: Duration,
                             ready: BenchFlag, stop: BenchFlag) throws(SystemError) -> [FrameTally] {
        let gapNanoseconds = MonotonicClock.nanoseconds(in: gap)
        let deadline = MonotonicClock.nanoseconds() + MonotonicClock.nanoseconds(in: timeout)
        var cutter = BurstCutter(sizes: sizes, minimumFrames: minimumFrames, gapNanoseconds: gapNanoseconds,
                                 count: try counter.read(), at: MonotonicClock.nanoseconds())
        ready.set()
        while !stop.isSet && !cutter.isComplete && MonotonicClock.nanoseconds() < deadline {
            MonotonicClock.sleep(.milliseconds(1))
            let value = try counter.read()
            cutter.sample(value, at: MonotonicClock.nanoseconds())
        }
        return cutter.finish()
    }
}

/// Cuts samples of a frame counter (rx_packets) into bursts separated by `gapNanoseconds`
/// without a new frame, one per size the sender sent, in order; bursts of fewer than
/// `minimumFrames` frames (stray ARP, a ping) are ignored. A burst counts every frame from the
/// last sample before its first change to its last change, and its window runs between those
/// samples' times: the first frames arrived somewhere after the quiet sample, so neither they
/// nor the time they took are left out.
struct BurstCutter {
    let sizes: [Int]
    let minimumFrames: Int
    let gapNanoseconds: UInt64
    private(set) var tallies: [FrameTally] = []
    private var previous: (count: UInt64, time: UInt64)
    private var burst: (startTime: UInt64, startCount: UInt64, lastTime: UInt64, lastCount: UInt64)?

    /// Starting from the counter's value `count` at `time`.
    init(sizes: [Int], minimumFrames: Int, gapNanoseconds: UInt64, count: UInt64, at time: UInt64) {
        self.sizes = sizes
        self.minimumFrames = minimumFrames
        self.gapNanoseconds = gapNanoseconds
        previous = (count, time)
    }

    /// Whether a burst has been cut for every size.
    var isComplete: Bool { tallies.count >= sizes.count }

    /// The counter read `count` at `time`. A counter that went back (the interface was
    /// recreated) starts afresh from its new value, and the burst it cut short is dropped, so
    /// that it is not taken for a size's whole burst.
    mutating func sample(_ count: UInt64, at time: UInt64) {
        defer { previous = (count, time) }
        guard count != previous.count else {
            if let current = burst, time &- current.lastTime > gapNanoseconds { close() }
            return
        }
        guard count > previous.count else {
            burst = nil
            return
        }
        if burst == nil {
            burst = (previous.time, previous.count, time, count)
        } else {
            burst?.lastTime = time
            burst?.lastCount = count
        }
    }

    /// The bursts cut, the one still open included.
    mutating func finish() -> [FrameTally] {
        close()
        return tallies
    }

    private mutating func close() {
        defer { burst = nil }
        guard let current = burst, !isComplete, current.lastCount - current.startCount >= UInt64(minimumFrames) else { return }
        var tally = FrameTally(size: sizes[tallies.count])
        tally.frames = Int(current.lastCount - current.startCount)
        tally.first = current.startTime
        tally.last = current.lastTime
        tallies.append(tally)
    }
}
