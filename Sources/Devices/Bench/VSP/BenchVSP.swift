import BenchProtocol
import HyperV
import LinuxSupport
import Synchronization
import VMBusHost
import VMBusProtocol

/// The bench device's host side (`BenchProtocol`): it sinks and verifies data, echoes pings,
/// produces data on request, and serves the raw-chain baseline, then reports what it measured
/// as partition facts (`bench.<mode>.<size>.*`).
public final class BenchVSP: VirtualServiceProvider {
    let host: any VSPHost

    /// The most distinct points (mode and message size) the device measures, over every channel
    /// it ever opens: the guest picks them, and each becomes facts the root keeps, so they are
    /// bounded (a guest that closed and opened the channel again used to get a new allowance each
    /// time, and could fill the partition's facts); past it the channel is closed as a protocol
    /// violation. The real bench uses 30 (`hv bench channel`).
    public static let pointLimit = 64
    /// The most distinct facts the bench device reports: seven per point, and its state and
    /// phase count.
    public static let factLimit = pointLimit * 7 + 2

    /// The points reported so far, by every session.
    let points = PointLedger()

    public init(host: any VSPHost) {
        self.host = host
    }

    /// Refuses the open only if the raw-chain listener cannot be started.
    public func openSession(_ opening: ChannelOpening) -> sending (any ChannelSession)? {
        do throws(SystemError) {
            return try BenchSession(host: host, points: points, relID: opening.relID, targetVP: opening.targetVP)
        } catch {
            host.report(["bench.state": "cannot start the raw-chain listener: \(error)"])
            return nil
        }
    }

    /// After a parent restart the bench carries on: pings are answered as before; a phase that
    /// was running is lost, so its remaining data is dropped and its end answered as not intact.
    public func resumeSession(_ opening: ChannelOpening) -> sending (any ChannelSession)? {
        do throws(SystemError) {
            return try BenchSession(host: host, points: points, relID: opening.relID, targetVP: opening.targetVP,
                                    resumed: true)
        } catch {
            host.report(["bench.state": "cannot start the raw-chain listener: \(error)"])
            return nil
        }
    }
}

/// One open bench channel: the phase in progress and every run measured so far.
final class BenchSession: ChannelSession {
    let host: any VSPHost
    private var phase: Phase?
    private var phaseNumber = 0
    private let rawChain: EventListener
    private let rawConnection: ConnectionID
    private let rawTarget = TargetProcessor()
    private var outgoing: [UInt8] = []
    /// Every run of each throughput and source point so far, by fact prefix.
    private var runs: [String: PhaseRuns] = [:]
    /// Whether this session took over from one a parent lost: a phase it never saw started is
    /// not a protocol violation then.
    private let resumed: Bool
    /// The fact prefixes the device reported so far (at most `BenchVSP.pointLimit`).
    private let points: PointLedger

    struct Phase {
        var id: UInt32
        var parameters: BenchPhase
        /// When the host read `phaseStart`; packets are handled in order, so the time until it
        /// reads `phaseEnd` covers exactly the phase's data.
        var started: UInt64
        var messages: UInt64 = 0
        /// Sink phases: what arrived; source phases: what was sent (when the phase verifies).
        var checksum = BenchPattern.seed
        var produced: UInt32 = 0
        var expectedSequence: UInt32 = 0
        var inOrder = true
    }

    /// Starts the raw-chain baseline's listener: HvSignalEvent on relid|0x4000 wakes it, and it
    /// only rings the target processor's SINT 2 doorbell — the chain the VMBus path adds rings
    /// to. Its connection is registered before the open is answered, like the channel's own.
    init(host: any VSPHost, points: PointLedger, relID: UInt32, targetVP: UInt32, resumed: Bool = false)
        throws(SystemError)
    {
        self.host = host
        self.points = points
        self.resumed = resumed
        let event = try EventFD()
        let target = rawTarget
        target.value.store(targetVP, ordering: .releasing)
        rawChain = try EventListener(name: "raw\(relID)", event: event) { _ in
            host.raise(vp: target.value.load(ordering: .acquiring), sint: UInt8(VMBusConstants.messageSINT))
        }
        rawConnection = BenchProtocol.rawChainConnectionID(childRelID: relID)
        host.registerEventConnection(rawConnection, event: event)
        host.report(["bench.state": "open"])
    }

    func close() {
        host.unregisterEventConnection(rawConnection)
        rawChain.stop()
    }

    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError) {
        let payload = packet.payload
        guard packet.descriptor.type == .inband, let header = BenchHeader(parsing: payload) else {
            throw .protocolViolation("bench: malformed packet")
        }
        switch header.kind {
        case .phaseStart:
            guard let parameters = BenchPhase(parsing: payload.dropFirst(BenchHeader.size)),
                  parameters.messageSize >= UInt32(BenchProtocol.minimumMessageSize),
                  parameters.messageSize <= 1 << 20 else {
                throw .protocolViolation("bench: bad phase parameters")
            }
            phase = Phase(id: header.phase, parameters: parameters, started: MonotonicClock.nanoseconds())
            rawTarget.value.store(channel.targetVP, ordering: .releasing)
            switch parameters.mode {
            case .polledRoundTrip:
                channel.keepPolling(forNanoseconds: 60_000_000_000)
            case .signalledRoundTrip, .haltingRoundTrip, .rawChain:
                // Signalled means signalled: sleep as soon as the ring is empty, so every ping
                // pays for the guest's HvSignalEvent and the eventfd wake-up.
                channel.idleSpinNanoseconds = 0
            default:
                break
            }
        case .data:
            guard var current = phase, current.id == header.phase else {
                if resumed && phase == nil { return }
                throw .protocolViolation("bench: data outside a phase")
            }
            // The payload runs to the packet's 8-byte padding; the message is its first
            // `messageSize` bytes.
            let size = Int(current.parameters.messageSize)
            guard payload.count >= size else {
                throw .protocolViolation("bench: data shorter than the phase's message size")
            }
            current.messages += 1
            if header.sequence != current.expectedSequence { current.inOrder = false }
            current.expectedSequence = header.sequence &+ 1
            if current.parameters.verifies {
                current.checksum = BenchPattern.checksum(current.checksum, payload.prefix(size).dropFirst(BenchHeader.size))
            }
            phase = current
        case .ping:
            // Echo the payload back as a pong with the same transaction ID.
            outgoing.removeAll(keepingCapacity: true)
            outgoing.append(contentsOf: payload)
            BenchHeader(kind: .pong, phase: header.phase, sequence: header.sequence).store(into: &outgoing)
            try channel.send(.inband, transactionID: packet.descriptor.transactionID, payload: outgoing)
            phase?.messages += 1
        case .phaseEnd:
            guard let current = phase, current.id == header.phase,
                  let end = BenchPhaseEnd(parsing: payload.dropFirst(BenchHeader.size)) else {
                if resumed && phase == nil {
                    var result = [UInt8](repeating: 0, count: BenchHeader.size)
                    BenchHeader(kind: .phaseResult, phase: header.phase).store(into: &result)
                    result += BenchPhaseResult(messages: 0, hostNanoseconds: 0, intact: false).bytes
                    try channel.send(.inband, transactionID: 0, payload: result)
                    return
                }
                throw .protocolViolation("bench: phase end outside a phase")
            }
            try finish(current, end, on: channel)
            phase = nil
            channel.keepPolling(forNanoseconds: 0)
            channel.idleSpinNanoseconds = ChannelWorker.spinNanoseconds
        default:
            throw .protocolViolation("bench: unexpected kind \(header.kind.rawValue)")
        }
    }

    /// In source phases, writes data while the ring has room. When the phase verifies, each
    /// message carries the pattern for its sequence number and is folded into a checksum that
    /// the guest's must equal; otherwise the data is left as it is, to measure the ring alone.
    func work(on channel: VSPChannel) throws(VSPError) -> Bool {
        guard var current = phase, current.parameters.mode == .source,
              current.produced < current.parameters.count else { return false }
        let size = Int(current.parameters.messageSize)
        if outgoing.count != size { outgoing = [UInt8](repeating: 0, count: size) }
        let verifies = current.parameters.verifies
        var progressed = false
        while current.produced < current.parameters.count && channel.hasRoom(forPayload: size) {
            BenchHeader(kind: .sourceData, phase: current.id, sequence: current.produced).store(into: &outgoing)
            if verifies {
                BenchPattern.fill(&outgoing, from: BenchHeader.size, to: size, sequence: current.produced)
                current.checksum = BenchPattern.checksum(current.checksum, outgoing[BenchHeader.size...])
            }
            try channel.send(.inband, transactionID: UInt64(current.produced), payload: outgoing)
            current.produced += 1
            progressed = true
        }
        phase = current
        return progressed
    }

    private func finish(_ current: Phase, _ end: BenchPhaseEnd, on channel: VSPChannel) throws(VSPError) {
        let parameters = current.parameters
        let now = MonotonicClock.nanoseconds()
        var intact = true
        let hostNanoseconds = now &- current.started
        var messages = current.messages
        switch parameters.mode {
        case .throughput:
            intact = current.inOrder && current.messages == end.messages
                && (!parameters.verifies || current.checksum == end.checksum)
        case .source:
            messages = UInt64(current.produced)
            intact = end.messages == messages && (!parameters.verifies || current.checksum == end.checksum)
        default:
            intact = end.messages > 0
        }
        let prefix = "bench.\(parameters.mode.name).\(parameters.messageSize)."
        let run = PhaseRuns.Run(messages: messages, hostNanoseconds: hostNanoseconds,
                                guestNanoseconds: end.guestNanoseconds, intact: intact)
        // A throughput point the guest repeats is reported by its median run; every run must be intact.
        var reportedRun = run
        var allIntact = intact
        var runCount = 1
        if !points.admit(prefix) {
            throw .protocolViolation("bench: more than \(BenchVSP.pointLimit) distinct phase points")
        }
        if parameters.mode == .throughput || parameters.mode == .source {
            runs[prefix, default: PhaseRuns()].add(run)
            if let points = runs[prefix], let median = points.median {
                reportedRun = median
                allIntact = points.allIntact
                runCount = points.count
            }
        }
        var facts = [
            prefix + "messages": "\(reportedRun.messages)",
            prefix + "host_ns": "\(reportedRun.hostNanoseconds)",
            prefix + "guest_ns": "\(reportedRun.guestNanoseconds)",
            prefix + "intact": allIntact ? "true" : "false",
            prefix + "runs": "\(runCount)",
        ]
        if end.p50Nanoseconds > 0 {
            facts[prefix + "p50_ns"] = "\(end.p50Nanoseconds)"
            facts[prefix + "p99_ns"] = "\(end.p99Nanoseconds)"
        }
        phaseNumber += 1
        facts["bench.phases"] = "\(phaseNumber)"
        host.report(facts)
        var result = [UInt8](repeating: 0, count: BenchHeader.size)
        BenchHeader(kind: .phaseResult, phase: current.id).store(into: &result)
        result += BenchPhaseResult(messages: messages, hostNanoseconds: hostNanoseconds, intact: intact).bytes
        try channel.send(.inband, transactionID: 0, payload: result)
    }
}

/// The processor the raw-chain listener raises, shared with its thread.
final class TargetProcessor: Sendable {
    let value = Atomic<UInt32>(0)
}

/// The runs of one throughput point, for reporting the median: on a machine with as many
/// spinning threads as cores, one run in several loses a scheduler time slice, and a single
/// short run can be off by a factor of ten.
struct PhaseRuns {
    struct Run: Equatable {
        var messages: UInt64
        var hostNanoseconds: UInt64
        var guestNanoseconds: UInt64
        var intact: Bool

        /// Messages per second as the host timed them.
        var rate: Double { hostNanoseconds == 0 ? 0 : Double(messages) / Double(hostNanoseconds) * 1e9 }
    }

    private(set) var runs: [Run] = []
    /// The runs kept per point: the latest ones.
    static let limit = 101

    mutating func add(_ run: Run) {
        runs.append(run)
        if runs.count > Self.limit { runs.removeFirst(runs.count - Self.limit) }
    }

    var count: Int { runs.count }
    var allIntact: Bool { runs.allSatisfy(\.intact) }

    /// The run with the median rate (the lower middle one of an even count).
    var median: Run? {
        guard !runs.isEmpty else { return nil }
        return runs.sorted { $0.rate < $1.rate }[(runs.count - 1) / 2]
    }
}

/// The fact prefixes a bench device has reported, shared by its sessions.
final class PointLedger: Sendable {
    private let prefixes = Mutex<Set<String>>([])

    /// Whether `prefix` may be reported: one reported before, or a new one within
    /// `BenchVSP.pointLimit`.
    func admit(_ prefix: String) -> Bool {
        prefixes.withLock { prefixes in
            prefixes.contains(prefix) || prefixes.count < BenchVSP.pointLimit && prefixes.insert(prefix).inserted
        }
    }
}
