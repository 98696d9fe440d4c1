import BenchProtocol
import HyperV
import VMBusClient
import VMBusProtocol

/// The guest side of the bench device: runs the plan's phases against the bench VSP and
/// prints what both sides measured (`BenchProtocol`; Docs/benchmarks.md).
public struct BenchVSC<Channel: VMBusChannel> {
    public var channel: Channel
    var buffer = [UInt8](repeating: 0, count: 70_000)
    var phase: UInt32 = 0

    public init(channel: Channel) {
        self.channel = channel
    }

    /// The largest message (payload) both of the channel's rings take.
    public var largestMessageSize: Int { channel.largestMessageSize }

    /// Runs `plan` (comma-separated modes: throughput, source, signalled, polled, halting, raw) over
    /// `sizes`; throughput phases move `bytes` each and run `repetitions` times (the host
    /// reports the median), round-trip phases make `roundTrips` trips.
    public mutating func run(plan: String, sizes: [Int], bytes: Int, roundTrips: Int, verify: Bool, repetitions: Int = 1) {
        let runs = max(1, repetitions)
        for mode in plan.split(separator: ",") {
            switch mode {
            case "throughput":
                for size in sizes {
                    for _ in 0..<runs { throughput(size: size, count: max(64, bytes / size), verify: verify) }
                }
            case "source":
                for size in sizes {
                    for _ in 0..<runs { source(size: size, count: max(64, bytes / size), verify: verify) }
                }
            case "signalled":
                for size in sizes { pingPong(size: size, count: roundTrips, polled: false) }
            case "polled":
                for size in sizes { pingPong(size: size, count: roundTrips, polled: true) }
            case "halting":
                for size in sizes { pingPong(size: size, count: roundTrips, polled: false, halting: true) }
            case "raw":
                rawChain(count: roundTrips)
            default:
                print("bench: unknown mode \(mode)")
            }
        }
    }

    // MARK: Phases

    /// How long a phase may wait for the host before it ends with what it has measured.
    static var phaseTimeoutNanoseconds: UInt64 { 60_000_000_000 }

    mutating func start(_ mode: BenchMode, size: Int, count: Int, verify: Bool = false) {
        phase += 1
        var packet = [UInt8](repeating: 0, count: BenchHeader.size)
        BenchHeader(kind: .phaseStart, phase: phase).store(into: &packet)
        packet += BenchPhase(mode: mode, messageSize: UInt32(size), count: UInt32(count),
                             flags: verify ? BenchPhase.verifyFlag : 0).bytes
        channel.send(payload: packet)
    }

    /// Sends the phase end and waits for the host's result; prints both sides' figures.
    mutating func finish(_ mode: BenchMode, size: Int, messages: Int, checksum: UInt64, nanoseconds: UInt64,
                         latencies: [UInt64] = []) {
        var p50: UInt64 = 0
        var p99: UInt64 = 0
        if !latencies.isEmpty {
            let sorted = latencies.sorted()
            p50 = sorted[sorted.count / 2]
            p99 = sorted[min(sorted.count - 1, sorted.count * 99 / 100)]
        }
        var packet = [UInt8](repeating: 0, count: BenchHeader.size)
        BenchHeader(kind: .phaseEnd, phase: phase).store(into: &packet)
        packet += BenchPhaseEnd(messages: UInt64(messages), checksum: checksum, guestNanoseconds: nanoseconds,
                                p50Nanoseconds: p50, p99Nanoseconds: p99).bytes
        channel.send(payload: packet)
        var result: BenchPhaseResult?
        let deadline = channel.timestamp() &+ channel.ticks(nanoseconds: 10_000_000_000)
        while result == nil && channel.timestamp() < deadline {
            if let descriptor = channel.receive(into: &buffer) {
                let payload = buffer[descriptor.payloadOffset..<descriptor.totalLength]
                if BenchHeader(parsing: payload)?.kind == .phaseResult {
                    result = BenchPhaseResult(parsing: payload.dropFirst(BenchHeader.size))
                }
            } else {
                channel.relax()
            }
        }
        let host = result.map { "host-ns=\($0.hostNanoseconds) intact=\($0.intact)" } ?? "no host result"
        print("bench: \(mode.name) size=\(size) messages=\(messages) guest-ns=\(nanoseconds) p50-ns=\(p50) p99-ns=\(p99) \(host)")
    }

    /// Guest → host as fast as the ring allows, publishing in batches so the host is signalled
    /// only when its ring goes from empty to non-empty.
    mutating func throughput(size: Int, count: Int, verify: Bool) {
        var message = [UInt8](repeating: 0, count: size)
        BenchPattern.fill(&message, from: BenchHeader.size, to: size, sequence: 1)
        var checksum = BenchPattern.seed
        start(.throughput, size: size, count: count, verify: verify)
        let batch = max(1, 16_384 / size)
        let begin = channel.timestamp()
        for sequence in 0..<count {
            BenchHeader(kind: .data, phase: phase, sequence: UInt32(sequence)).store(into: &message)
            if verify {
                // Vary the data per message, so stale data from an earlier lap of the ring shows.
                stamp(&message, sequence: UInt64(sequence))
                checksum = BenchPattern.checksum(checksum, message[BenchHeader.size...])
            }
            while !channel.stage(.inband, flags: [], transactionID: 0, payload: message) {
                channel.publish()
                channel.relax()
            }
            if sequence % batch == batch - 1 { channel.publish() }
        }
        channel.publish()
        let elapsed = channel.nanoseconds(from: begin, to: channel.timestamp())
        finish(.throughput, size: size, messages: count, checksum: checksum, nanoseconds: elapsed)
    }

    /// Writes the sequence number at the start, the middle and the end of the data (each
    /// position only if all eight bytes lie past the header).
    func stamp(_ message: inout [UInt8], sequence: UInt64) {
        message.withUnsafeMutableBytes { raw in
            let count = raw.count
            let middle = (count / 2) & ~7
            if BenchHeader.size + 8 <= count {
                raw.storeBytes(of: sequence, toByteOffset: BenchHeader.size, as: UInt64.self)
            }
            if middle >= BenchHeader.size && middle + 8 <= count {
                raw.storeBytes(of: sequence, toByteOffset: middle, as: UInt64.self)
            }
            if count - 8 >= BenchHeader.size {
                raw.storeBytes(of: sequence, toByteOffset: count - 8, as: UInt64.self)
            }
        }
    }

    /// Host → guest: the host produces `count` messages; the guest reads and checks them.
    mutating func source(size: Int, count: Int, verify: Bool) {
        start(.source, size: size, count: count, verify: verify)
        var received = 0
        var checksum = BenchPattern.seed
        let begin = channel.timestamp()
        let deadline = begin &+ channel.ticks(nanoseconds: Self.phaseTimeoutNanoseconds)
        while received < count && channel.timestamp() < deadline {
            guard let descriptor = channel.receive(into: &buffer) else {
                channel.relax()
                continue
            }
            if verify {
                // The message's data after its header, without the ring's 0-7 padding bytes: what
                // the host folded into its checksum.
                let end = descriptor.totalLength
                let first = min(descriptor.payloadOffset + BenchHeader.size, end)
                let last = min(descriptor.payloadOffset + size, end)
                checksum = BenchPattern.checksum(checksum, buffer[first..<last])
            }
            received += 1
        }
        let elapsed = channel.nanoseconds(from: begin, to: channel.timestamp())
        finish(.source, size: size, messages: received, checksum: checksum, nanoseconds: elapsed)
    }

    /// Ping-pong of `size`-byte messages. Signalled: the guest waits for the SINT 2 interrupt
    /// (its interrupt_mask is clear, so the host signals), spinning, or with `halting`, halted
    /// until the interrupt; polled: both sides spin on the rings with their interrupt masks set.
    mutating func pingPong(size: Int, count: Int, polled: Bool, halting: Bool = false) {
        var ping = [UInt8](repeating: 0, count: size)
        BenchPattern.fill(&ping, from: BenchHeader.size, to: size, sequence: 2)
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        let mode: BenchMode = polled ? .polledRoundTrip : halting ? .haltingRoundTrip : .signalledRoundTrip
        start(mode, size: size, count: count)
        if polled { channel.beginPolling() }
        let begin = channel.timestamp()
        // As in `source`: a host that stops answering ends the phase early, with what was measured.
        let deadline = begin &+ channel.ticks(nanoseconds: Self.phaseTimeoutNanoseconds)
        var completed = 0
        trips: for sequence in 0..<count {
            BenchHeader(kind: .ping, phase: phase, sequence: UInt32(sequence)).store(into: &ping)
            let interrupts = channel.interruptCount
            let sent = channel.timestamp()
            channel.send(transactionID: UInt64(sequence), payload: ping)
            if !polled {
                while channel.interruptCount == interrupts {
                    guard channel.timestamp() < deadline else { break }
                    // The wait sets up its halt with interrupts off, so a pong arriving meanwhile ends
                    // the halt at once; only one landing in the few instructions before the wait
                    // traps leaves the halt to its timeout.
                    if halting { channel.waitForHost(nanoseconds: 1_000_000) } else { channel.relax() }
                }
            }
            while channel.receive(into: &buffer) == nil {
                guard channel.timestamp() < deadline else { break trips }
                channel.relax()
            }
            samples.append(channel.nanoseconds(from: sent, to: channel.timestamp()))
            completed += 1
        }
        let elapsed = channel.nanoseconds(from: begin, to: channel.timestamp())
        if polled { _ = channel.endPolling() }
        finish(mode, size: size, messages: completed, checksum: 0, nanoseconds: elapsed, latencies: samples)
    }

    /// The raw chain the signalled round trip is compared with: HvSignalEvent on the raw
    /// connection (ioeventfd), the VSP's listener wakes (eventfd) and rings the SINT 2
    /// doorbell (irqfd → MSI), the guest sees the interrupt. No ring, no event flag.
    mutating func rawChain(count: Int) {
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        start(.rawChain, size: BenchProtocol.minimumMessageSize, count: count)
        let connection = BenchProtocol.rawChainConnectionID(childRelID: channel.relID)
        let begin = channel.timestamp()
        let deadline = begin &+ channel.ticks(nanoseconds: Self.phaseTimeoutNanoseconds)
        var completed = 0
        trips: for _ in 0..<count {
            let interrupts = channel.interruptCount
            let sent = channel.timestamp()
            channel.signalEvent(connection: connection)
            while channel.interruptCount == interrupts {
                guard channel.timestamp() < deadline else { break trips }
                channel.relax()
            }
            samples.append(channel.nanoseconds(from: sent, to: channel.timestamp()))
            completed += 1
        }
        let elapsed = channel.nanoseconds(from: begin, to: channel.timestamp())
        finish(.rawChain, size: BenchProtocol.minimumMessageSize, messages: completed, checksum: 0, nanoseconds: elapsed,
               latencies: samples)
    }
}
