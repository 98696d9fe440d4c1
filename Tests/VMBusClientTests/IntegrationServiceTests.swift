import GuestMemory
import HyperV
import ICProtocol
import ICVSC
import ICVSP
import LinuxSupport
import Synchronization
import TestSupport
import Testing
import VMBusClient
import VMBusHost
import VMBusProtocol

/// The facts the parent's IC VSPs report, collected as the parent's `VSPHost` would.
final class FactBoard: VSPHost, Sendable {
    private let facts = Mutex<[String: String]>([:])
    /// The partition reference time the board answers with (100 ns units).
    static let referenceTime: UInt64 = 42_000_000
    var partitionName: String { "ic" }
    var processorCount: UInt32 { 1 }
    func raise(vp: UInt32, sint: UInt8) {}
    func registerEventConnection(_ connection: ConnectionID, event: EventFD) {}
    func unregisterEventConnection(_ connection: ConnectionID) {}
    func report(_ new: [String: String]) { facts.withLock { $0.merge(new) { $1 } } }
    func referenceTime() -> UInt64 { Self.referenceTime }
    subscript(key: String) -> String? { facts.withLock { $0[key] } }
}

/// One integration-component channel, both ends real: the parent's `IntegrationServiceVSP`
/// served by a `ChannelWorker` thread, as the parent serves it, and the guest's
/// `IntegrationServiceVSC`, over two 16 KiB rings in one `GuestMemory` (the guest's end reaches
/// them through `InMemoryChannel`). The guest's HvSignalEvent rings the worker's eventfd.
struct ICChannel {
    let board = FactBoard()
    let device: IntegrationServiceVSP
    let worker: ChannelWorker
    let failure = Locked<String?>(nil)
    var vsc: IntegrationServiceVSC<InMemoryChannel<GuestRingMemory>>
    var shutdownRequests = 0

    init(_ service: ICService, guestVersions: [ICVersion]? = nil) throws {
        let memory = try GuestMemory.create(name: "ic", size: 1 << 20)
        let toHost: [UInt64] = [16, 17, 18, 19]
        let toGuest: [UInt64] = [32, 33, 34, 35]
        let guestSignal = try EventFD()
        let interrupts = Counter()
        let channel = try VSPChannel(relID: 1, incoming: GuestRingMemory(memory: memory, pages: toHost[...]),
                                     outgoing: GuestRingMemory(memory: memory, pages: toGuest[...]), targetVP: 0,
                                     guestSignal: guestSignal) { _ in interrupts.add() }
        device = IntegrationServiceVSP(service: service, host: board)
        let session = try #require(device.openSession(ChannelOpening(relID: 1, targetVP: 0)))
        let failure = failure
        worker = try ChannelWorker(channel: channel, session: session) { reason in failure.withLock { $0 = reason } }
        let guestEnd = try InMemoryChannel(relID: 1, outgoing: GuestRingMemory(memory: memory, pages: toHost[...]),
                                           incoming: GuestRingMemory(memory: memory, pages: toGuest[...]),
                                           interrupts: interrupts) { guestSignal.signal() }
        vsc = IntegrationServiceVSC(service: service, channel: guestEnd, messageVersions: guestVersions)
    }

    /// The guest polls its VSC until `done` holds (true) or ten seconds pass (false).
    mutating func serve(until done: (ICChannel) -> Bool) -> Bool {
        let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
        while MonotonicClock.nanoseconds() < deadline {
            if vsc.poll() == .shutdown { shutdownRequests += 1 }
            if done(self) { return true }
            MonotonicClock.sleep(.milliseconds(1))
        }
        return false
    }

    func version(_ key: String) -> String? { board["\(key).version"] }
}

func text(_ version: ICVersion) -> String { "\(version.major).\(version.minor)" }

@Suite("Integration components: the parent's VSPs answered by the guest's VSC (§7.2)", .serialized)
struct IntegrationServiceTests {
    @Test(arguments: ICService.heartbeat.messageVersions)
    func heartbeatAtEveryVersion(_ version: ICVersion) throws {
        var channel = try ICChannel(.heartbeat, guestVersions: [version])
        defer { channel.worker.stop() }
        // The VSP's first heartbeat goes out on agreement with sequence 0; the guest returns 1.
        #expect(channel.serve { $0.board["heartbeat.sequence"] == "1" })
        #expect(channel.version("heartbeat") == text(version))
        #expect(channel.vsc.negotiated == version && channel.vsc.lastHeartbeat == 0)
        #expect(channel.board["heartbeat.seen"] != nil)
        #expect(channel.failure.withLock { $0 } == nil)
    }

    @Test(arguments: ICService.shutdown.messageVersions)
    func shutdownAtEveryVersion(_ version: ICVersion) throws {
        var channel = try ICChannel(.shutdown, guestVersions: [version])
        defer { channel.worker.stop() }
        #expect(channel.serve { $0.board["shutdown.state"] == "ready" })
        #expect(channel.version("shutdown") == text(version))
        #expect(channel.shutdownRequests == 0)
        channel.device.requestGuestShutdown()
        #expect(channel.serve { $0.board["shutdown.answer"] == "accepted" && $0.shutdownRequests == 1 })
        #expect(channel.failure.withLock { $0 } == nil)
    }

    @Test(arguments: ICService.timeSync.messageVersions)
    func timeSyncAtEveryVersion(_ version: ICVersion) throws {
        var channel = try ICChannel(.timeSync, guestVersions: [version])
        defer { channel.worker.stop() }
        // The first sample goes out on agreement, with SYNC set.
        #expect(channel.serve { $0.board["timesync.samples"] == "1" })
        #expect(channel.version("timesync") == text(version))
        let sample = try #require(channel.vsc.lastTimeSample)
        #expect(sample.flags == .sync)
        // 4.0 carries the partition reference time read with the host time; older ones do not.
        #expect(sample.referenceTime == (version.major >= 4 ? FactBoard.referenceTime : nil))
        let hostNow = MonotonicClock.realtimeNanoseconds() / 100 + FileTime.unixEpochOffset
        #expect(sample.parentTime.rawValue <= hostNow && hostNow - sample.parentTime.rawValue < 600 * 10_000_000)
        #expect(channel.failure.withLock { $0 } == nil)
    }

    /// Without a preference of its own the guest picks what Linux's hv_utils picks.
    @Test func theGuestPicksLinuxsVersions() throws {
        for (service, key, expected) in [(ICService.heartbeat, "heartbeat", "3.0"), (.shutdown, "shutdown", "3.2"),
                                         (.timeSync, "timesync", "4.0")] {
            var channel = try ICChannel(service)
            defer { channel.worker.stop() }
            #expect(channel.serve { $0.board["\(key).state"] == "ready" }, "\(key)")
            #expect(channel.version(key) == expected)
        }
    }

    @Test func noCommonVersionIsReportedNotFatal() throws {
        var channel = try ICChannel(.heartbeat, guestVersions: [ICVersion(9, 9)])
        defer { channel.worker.stop() }
        #expect(channel.serve { $0.board["heartbeat.state"] == "no common version" })
        #expect(channel.vsc.negotiated == nil)
        #expect(channel.failure.withLock { $0 } == nil)
    }
}

@Suite("Integration components: the guest's VSC facing a hostile host")
struct HostileICHostTests {
    /// Seeded mutations of every request a host sends (negotiate, heartbeat, shutdown, both
    /// time-sync layouts), written into the guest's ring: the VSC never traps, and whatever it
    /// answers is an in-place answer, exactly as long as the request.
    @Test(arguments: [UInt64(21), 22, 23])
    func mutatedRequestsNeverTrapTheVSC(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        let toHost = FlatRingMemory(dataSize: 16 * 1024)
        let toGuest = FlatRingMemory(dataSize: 16 * 1024)
        var host = try RingWriter(memory: toGuest)
        var hostReader = try RingReader(memory: toHost)
        let guestEnd = try InMemoryChannel(relID: 1, outgoing: toHost, incoming: toGuest) {}
        var vsc = IntegrationServiceVSC(service: .timeSync, channel: guestEnd)
        let framework = ICVersion(3, 0)
        let now = FileTime(rawValue: 133_000_000_000_000_000)
        let requests: [ICMessage] = [
            ICNegotiation.request(messageVersions: ICService.timeSync.messageVersions),
            ICNegotiation.request(messageVersions: [ICVersion(9, 9)]),
            .request(type: .heartbeat, frameworkVersion: framework, messageVersion: ICVersion(3, 0),
                     body: HeartbeatBody(sequenceNumber: 7).bytes),
            .request(type: .shutdown, frameworkVersion: framework, messageVersion: ICVersion(3, 2),
                     body: ShutdownBody(flags: .powerOff, displayMessage: Array("bye".utf8)).bytes),
            .request(type: .timeSync, frameworkVersion: framework, messageVersion: ICVersion(4, 0),
                     body: TimeSyncReferenceBody(parentTime: now, vmReferenceTime: 5, flags: .sync).bytes),
            .request(type: .timeSync, frameworkVersion: framework, messageVersion: ICVersion(3, 0),
                     body: TimeSyncBody(parentTime: now, flags: .sample).bytes),
        ]
        var buffer = [UInt8](repeating: 0, count: 8192)
        var answers = 0
        for _ in 0..<3000 {
            let request = random.mutate(requests.randomElement(using: &random)!.bytes)
            guard (try? host.write(type: .inband, transactionID: 0, payload: request)) != nil else { continue }
            _ = host.commit()
            _ = vsc.poll()
            while let descriptor = try hostReader.next(into: &buffer) {
                let answer = Array(buffer[descriptor.payloadOffset..<descriptor.totalLength])
                // The VSC sees (and answers) the request with the ring's padding to 8 bytes.
                #expect(answer.count == (request.count + 7) & ~7)
                let parsed = try? ICMessage(parsing: answer)
                #expect(parsed?.header.flags == [.transaction, .response])
                answers += 1
            }
            _ = hostReader.commit()
        }
        // Most mutations leave a parseable header, and every such request is answered.
        #expect(answers > 1000)
    }
}
