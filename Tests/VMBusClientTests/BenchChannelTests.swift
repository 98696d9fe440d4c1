import BenchProtocol
import BenchVSC
import BenchVSP
import GuestMemory
import LinuxSupport
import Testing
import VMBusHost
import VMBusProtocol

/// The guest's bench VSC against the parent's bench VSP, both real, the VSP behind a
/// `ChannelWorker` thread, over rings of `ringPages` pages each in one `GuestMemory`.
struct BenchChannel {
    let board = FactBoard()
    let worker: ChannelWorker
    let failure = Locked<String?>(nil)
    var vsc: BenchVSC<InMemoryChannel<GuestRingMemory>>

    init(ringPages: Int) throws {
        let memory = try GuestMemory.create(name: "bench", size: 4 << 20)
        let toHost = (0..<ringPages).map { UInt64(16 + $0) }
        let toGuest = (0..<ringPages).map { UInt64(512 + $0) }
        let guestSignal = try EventFD()
        let interrupts = Counter()
        let channel = try VSPChannel(relID: 1, incoming: GuestRingMemory(memory: memory, pages: toHost[...]),
                                     outgoing: GuestRingMemory(memory: memory, pages: toGuest[...]), targetVP: 0,
                                     guestSignal: guestSignal) { _ in interrupts.add() }
        let device = BenchVSP(host: board)
        let session = try #require(device.openSession(ChannelOpening(relID: 1, targetVP: 0)))
        let failure = failure
        worker = try ChannelWorker(channel: channel, session: session) { reason in failure.withLock { $0 = reason } }
        vsc = BenchVSC(channel: try InMemoryChannel(
            relID: 1, outgoing: GuestRingMemory(memory: memory, pages: toHost[...]),
            incoming: GuestRingMemory(memory: memory, pages: toGuest[...]), interrupts: interrupts) { guestSignal.signal() })
    }
}

@Suite("Bench: the guest's VSC against the parent's VSP (Docs/benchmarks.md)", .serialized)
struct BenchChannelTests {
    /// Every phase but the raw chain (which needs a processor's doorbell): data checked end to
    /// end in both directions, and round trips answered, on rings of one data page (every
    /// message wraps) and of fifteen.
    @Test(arguments: [2, 16])
    func phasesRunIntactOverTheRealRings(ringPages: Int) throws {
        var bench = try BenchChannel(ringPages: ringPages)
        defer { bench.worker.stop() }
        let largest = bench.vsc.largestMessageSize
        #expect(largest == min(ringPages * 4096 - 4096 - 8 - 16 - 8, RingLayout.maximumPacketLength - 16))
        let sizes = [64, largest]
        bench.vsc.run(plan: "throughput,source,signalled,polled", sizes: sizes, bytes: 1 << 20, roundTrips: 50, verify: true)
        for size in sizes {
            for mode in ["throughput", "source"] {
                #expect(bench.board["bench.\(mode).\(size).intact"] == "true", "\(mode) \(size)")
                #expect(bench.board["bench.\(mode).\(size).messages"] == "\(max(64, (1 << 20) / size))")
            }
            for mode in ["signalled", "polled"] {
                #expect(bench.board["bench.\(mode).\(size).messages"] == "50", "\(mode) \(size)")
            }
        }
        #expect(bench.failure.withLock { $0 } == nil)
    }
}
