import GuestKit
import HyperV

/// Proves the Hyper-V interface end to end and reports what it saw on the debug port:
/// processor identity, the reference TSC page against TIME_REF_COUNT, the raw cost of a PIO
/// exit, message round trips through the parent's echo service (SINT interrupt and polled
/// slot), event round trips (HvSignalEvent out, event flag and SINT back), and the status
/// codes of hostile hypercalls. Then it keeps checking the parent every half second.
struct Probe {
    let info: BootInfo
    let clock: Clock
    let synic = SynICClient(vp: 0)
    let interruptSINT = 5
    let polledSINT = 6
    /// FNV-1a of the partition's name: carried in every echo payload and kept in a marker page,
    /// so a message or a page shared with another partition would show up as a mismatch.
    let tag: UInt32
    /// The marker page: the first free page, at the same GPA in every partition.
    let markerPage: UnsafeMutablePointer<UInt32>

    init(info: BootInfo) {
        self.info = info
        clock = Clock(tscFrequencyHz: info.tscFrequencyHz)
        var hash: UInt32 = 0x811C_9DC5
        for byte in info.name.utf8 { hash = (hash ^ UInt32(byte)) &* 0x0100_0193 }
        tag = hash
        markerPage = physical(info.freeMemoryStart).assumingMemoryBound(to: UInt32.self)
    }

    func run() -> Never {
        markerPage.pointee = tag
        print("probe: partition \(info.name), \(info.processorCount) VP, \(info.memorySize >> 20) MiB, TSC \(info.tscFrequencyHz / 1_000_000) MHz")
        // The other processors record VP_INDEX during their own set-up, which the host may run
        // later than ours: give them up to five seconds (none of them can legitimately read 0).
        let deadline = CPU.timestamp() &+ clock.ticks(nanoseconds: 5_000_000_000)
        while (1..<max(1, info.processorCount)).contains(where: { SynICClient.vpIndexSeen($0) == 0 }),
              CPU.timestamp() < deadline {
            CPU.relax()
        }
        var indices = ""
        for vp in 0..<info.processorCount { indices += " \(SynICClient.vpIndexSeen(vp))" }
        print("probe: VP_INDEX read by each processor:\(indices)")
        checkReferenceTime()
        let iterations = info.integer("iterations", default: 200)
        let pio = measure(iterations) { _ in CPU.out8(PlatformPorts.nullExit, 0); return true }
        report("pio-exit", pio)
        let interrupt = measure(iterations) { echoMessage(sint: interruptSINT, sequence: $0) }
        report("message-rtt-interrupt", interrupt)
        let polled = measure(iterations) { echoMessage(sint: polledSINT, sequence: $0) }
        report("message-rtt-polled", polled)
        let events = measure(iterations) { _ in echoEvent() }
        report("event-rtt", events)
        probeHostileHypercalls()
        print("probe: isolation tag=\(tag) marker-gpa=\(info.freeMemoryStart)")
        checkMarker()
        print("probe: done")
        watchParent()
    }

    /// The reference TSC page and TIME_REF_COUNT must tell the same time.
    func checkReferenceTime() {
        guard let page = Clock.referenceTimeFromPage() else {
            print("probe: reference TSC page invalid (sequence 0)")
            return
        }
        let msr = Clock.referenceTimeFromMSR()
        let after = Clock.referenceTimeFromPage()?.time ?? 0
        let skew = msr > page.time ? (after > msr ? 0 : msr - after) : page.time - msr
        print("probe: reference-tsc sequence=\(page.sequence) page=\(page.time) msr=\(msr) skew-100ns=\(skew)")
    }

    /// Runs `body` `count` times, timing each successful run in nanoseconds.
    func measure(_ count: Int, _ body: (UInt32) -> Bool) -> [UInt64] {
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        for index in 0..<count {
            let start = CPU.timestamp()
            if body(UInt32(index)) { samples.append(clock.nanoseconds(from: start, to: CPU.timestamp())) }
        }
        return samples
    }

    func report(_ name: String, _ samples: [UInt64]) {
        guard !samples.isEmpty else {
            print("probe: \(name) failed")
            return
        }
        let sorted = samples.sorted()
        let p50 = sorted[sorted.count / 2]
        let p99 = sorted[min(sorted.count - 1, sorted.count * 99 / 100)]
        print("probe: \(name)-ns p50=\(p50) p99=\(p99) n=\(sorted.count)")
    }

    /// Posts an echo request asking for the reply on `sint`, then waits for it (spinning).
    /// A message travels root → parent → root, several thread hand-offs, each of which can wait
    /// for a core on a host whose cores are busy with other guests' spinning processors: under
    /// a full parallel test run round trips of 100-200 ms were seen, and a request given up
    /// after 200 ms left its late answer queued in front of the next one. The timeout only
    /// bounds the wait; on an idle host an answer takes well under a millisecond.
    func echoMessage(sint: Int, sequence: UInt32, timeoutNanoseconds: UInt64 = 1_000_000_000) -> Bool {
        var payload = [UInt8](repeating: 0, count: 16)
        payload[DiagnosticEcho.replySINTOffset] = UInt8(sint)
        payload[4] = UInt8(truncatingIfNeeded: sequence)
        payload[5] = UInt8(truncatingIfNeeded: sequence >> 8)
        for index in 0..<4 { payload[8 + index] = UInt8(truncatingIfNeeded: tag >> UInt32(8 * index)) }
        let status = Hypercall.postMessage(connection: DiagnosticEcho.messageConnection.rawValue,
                                           type: DiagnosticEcho.messageType.rawValue, payload: payload)
        guard status == .success else { return false }
        let deadline = CPU.timestamp() &+ clock.ticks(nanoseconds: timeoutNanoseconds)
        while CPU.timestamp() < deadline {
            if let message = synic.receive(sint: sint) {
                guard message.type == DiagnosticEcho.messageType.rawValue, message.payload.count == payload.count
                else {
                    print("probe: isolation violated: foreign message on SINT \(sint)")
                    return false
                }
                if message.payload == payload { return true }
                // Our tag with another sequence: the late answer to an earlier request that timed
                // out (a loaded host), not another partition's message. Keep waiting for ours.
                if Array(message.payload[8..<12]) == Array(payload[8..<12]) { continue }
                print("probe: isolation violated: foreign message on SINT \(sint)")
                return false
            }
            CPU.relax()
        }
        return false
    }

    /// The marker must still hold this partition's tag.
    func checkMarker() {
        let seen = markerPage.pointee
        if seen != tag { print("probe: isolation violated: marker holds \(seen), not \(tag)") }
    }

    /// Signals the echo event connection and waits for the flag and the SINT interrupt.
    func echoEvent(timeoutNanoseconds: UInt64 = 200_000_000) -> Bool {
        let before = SynICClient.interruptCount(slot: 1)
        guard Hypercall.signalEvent(connection: DiagnosticEcho.eventConnection.rawValue) == .success else { return false }
        let deadline = CPU.timestamp() &+ clock.ticks(nanoseconds: timeoutNanoseconds)
        while CPU.timestamp() < deadline {
            if SynICClient.interruptCount(slot: 1) != before
                && synic.takeEventFlag(sint: DiagnosticEcho.eventSINT, flag: DiagnosticEcho.eventFlag) {
                return true
            }
            CPU.relax()
        }
        return false
    }

    /// Hostile HvPostMessage inputs and the statuses the hypervisor returns for them.
    func probeHostileHypercalls() {
        let post = HypercallControl(code: .postMessage)
        let unaligned = Hypercall.raw(post, input: 0x9004, output: 0).rawValue
        let straddling = Hypercall.raw(post, input: 0x9F08, output: 0).rawValue
        let outside = Hypercall.raw(post, input: info.memorySize + 0x1000, output: 0).rawValue
        let unknownCode = Hypercall.raw(HypercallControl(rawValue: 0x7FFF), input: 0, output: 0).rawValue
        let unknownConnection = Hypercall.postMessage(connection: 0x00AB_CDEF, type: 1, payload: [1]).rawValue
        let unknownEvent = Hypercall.signalEvent(connection: 0x00AB_CDEF).rawValue
        print("probe: hostile-hypercalls unaligned=\(unaligned) straddling=\(straddling) outside-ram=\(outside) "
              + "unknown-code=\(unknownCode) unknown-connection=\(unknownConnection) unknown-event=\(unknownEvent)")
    }

    /// Every half second, checks that the parent answers; reports changes.
    func watchParent() -> Never {
        var reachable = true
        var round: UInt32 = 0
        while true {
            CPU.sleep(nanoseconds: 500_000_000)
            round &+= 1
            let answered = echoMessage(sint: interruptSINT, sequence: round, timeoutNanoseconds: 100_000_000)
            checkMarker()
            if answered != reachable {
                reachable = answered
                print(answered ? "probe: parent reachable" : "probe: parent unreachable")
            }
            if round % 20 == 0 { print("probe: alive round=\(round)") }
        }
    }
}
