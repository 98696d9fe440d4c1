import GuestMemory
import LinuxSupport
import NetworkProtocol
@testable import NetworkVSC
@testable import NetworkVSP
import Synchronization
import Testing
import VMBusProtocol
import VMBusHost
import VirtualSwitch

/// The NIC as the parent runs it — `NetworkAdapter` behind a real `ChannelWorker`, GPADL leases,
/// a real switch — driven by the guest's `NetworkVSC` over the same memfd RAM.
@Suite("NIC: the guest's netvsc against the parent's adapter and switch", .serialized)
struct AdapterTests {
    /// Two NICs on one private switch (addresses `a` and `b`), their guests initialized.
    static func startedPair() throws -> (AdapterHarness, AdapterHarness) {
        let virtualSwitch = VirtualSwitch(name: "p", kind: .private)
        let first = try AdapterHarness(switch: virtualSwitch, address: a)
        let second = try AdapterHarness(switch: virtualSwitch, address: b)
        try first.vsc.start()
        try second.vsc.start()
        return (first, second)
    }

    static let a = MACAddress(0x00, 0x15, 0x5D, 0x00, 0x00, 0x0A)
    static let b = MACAddress(0x00, 0x15, 0x5D, 0x00, 0x00, 0x0B)
    static let c = MACAddress(0x00, 0x15, 0x5D, 0x00, 0x00, 0x0C)

    @Test("bring-up: NVSP 6.1, the buffers, RNDIS, the configured MAC, link up, packet filter set")
    func bringUp() throws {
        let virtualSwitch = VirtualSwitch(name: "p", kind: .private)
        let harness = try AdapterHarness(switch: virtualSwitch, address: Self.a)
        try harness.vsc.start()
        #expect(harness.vsc.version == .v61)
        #expect(harness.vsc.macAddress == Self.a)
        #expect(harness.vsc.linkConnected)
        #expect(harness.vsc.mtu == 1500)
        #expect(harness.vsc.counters.badReceives == 0)
        harness.adapter.reportFacts()
        #expect(harness.host.facts["nic.00:15:5d:00:00:0a.nvsp_version"] == "6.1")
        #expect(harness.host.facts["nic.00:15:5d:00:00:0a.packet_filter"] == "0xd")
        #expect(harness.failures.value == nil)
    }

    @Test("two NICs on a private switch: frames of 60 to 1514 bytes arrive intact and in order, both ways")
    func framesBetweenTwoGuests() throws {
        let (first, second) = try Self.startedPair()
        let sizes = [60, 64, 500, 1514, 1000, 61]
        var sent: [[UInt8]] = []
        for (index, size) in sizes.enumerated() {
            var frame = BenchFrame.make(from: Self.a, to: Self.b, size: size, sequence: UInt64(index))
            frame[size - 1] = UInt8(index)
            let queued = first.vsc.transmit(frame)
            #expect(queued)
            sent.append(frame)
        }
        first.vsc.flush()
        #expect(second.collect(count: sizes.count) == sent)
        let back = BenchFrame.make(from: Self.b, to: Self.a, size: 777, sequence: 9)
        let queued = second.vsc.transmit(back)
        #expect(queued)
        second.vsc.flush()
        #expect(first.collect(count: 1) == [back])
    }

    @Test("a jumbo frame on an MTU 9000 switch goes GPA-direct and arrives whole")
    func jumboFrame() throws {
        let virtualSwitch = VirtualSwitch(name: "j", kind: .private, mtu: 9000)
        let first = try AdapterHarness(switch: virtualSwitch, address: Self.a)
        let second = try AdapterHarness(switch: virtualSwitch, address: Self.b)
        try first.vsc.start()
        try second.vsc.start()
        #expect(first.vsc.mtu == 9000)
        let frame = BenchFrame.make(from: Self.a, to: Self.b, size: 9014, sequence: 1)
        let queued = first.vsc.transmit(frame)
        #expect(queued)
        #expect(second.collect(count: 1) == [frame])
    }

    @Test("ping between two guests: ARP resolves, 20 of 20 echo requests answered")
    func pingAcrossTheSwitch() throws {
        let virtualSwitch = VirtualSwitch(name: "p", kind: .private)
        let peer = try ServingGuest(switch: virtualSwitch, mac: Self.b, address: 0x0A00_0002)
        defer { peer.stop() }
        #expect(peer.waitUntilReady())
        let harness = try AdapterHarness(switch: virtualSwitch, address: Self.a)
        try harness.vsc.start()
        var endpoint = IPv4Endpoint(macAddress: Self.a, address: 0x0A00_0001)
        let samples = harness.vsc.ping(0x0A00_0002, count: 20, endpoint: &endpoint)
        #expect(samples.count == 20)
    }

    @Test("a child flooding broadcasts does not stall another child's pings on the same switch")
    func floodDoesNotStallOthers() throws {
        let virtualSwitch = VirtualSwitch(name: "p", kind: .private)
        let peer = try ServingGuest(switch: virtualSwitch, mac: Self.b, address: 0x0A00_0002)
        defer { peer.stop() }
        #expect(peer.waitUntilReady())
        // The flooder: a third NIC sending broadcasts as fast as it can from its own thread.
        let flooding = Atomic<Bool>(true)
        let flooded = Atomic<Int>(0)
        let flooder = try OSThread.spawn(name: "flooder") { [virtualSwitch] in
            guard let harness = try? AdapterHarness(switch: virtualSwitch, address: Self.c), (try? harness.vsc.start()) != nil
            else { return }
            let frame = BenchFrame.make(from: Self.c, to: .broadcast, size: 1514, sequence: 0)
            while flooding.load(ordering: .relaxed) {
                if harness.vsc.transmit(frame) {
                    flooded.wrappingAdd(1, ordering: .relaxed)
                } else {
                    harness.vsc.flush()
                    harness.vsc.poll(copyFrames: false) { _ in }
                }
            }
        }
        defer {
            flooding.store(false, ordering: .relaxed)
            flooder.join()
        }
        let harness = try AdapterHarness(switch: virtualSwitch, address: Self.a)
        try harness.vsc.start()
        while flooded.load(ordering: .relaxed) < 2000 { MonotonicClock.sleep(.milliseconds(1)) }
        var endpoint = IPv4Endpoint(macAddress: Self.a, address: 0x0A00_0001)
        let samples = harness.vsc.ping(0x0A00_0002, count: 20, endpoint: &endpoint, timeoutNanoseconds: 5_000_000_000)
        #expect(samples.count == 20, "answered \(samples.count) of 20 while \(flooded.load(ordering: .relaxed)) broadcasts flooded")
        #expect(peer.received.load(ordering: .relaxed) > 0, "the peer saw the flood too")
    }

    /// A sending guest's port and failures, from the thread that runs it, and when that thread
    /// may let its NIC go (frames still in its ring would be lost with it).
    final class SenderFacts: Sendable {
        let value = Mutex<(port: SwitchPortID, failures: FailureBox)?>(nil)
        let done = Atomic<Bool>(false)
    }

    /// Sends `count` 64-byte frames from `harness`'s guest to `destination` as fast as its
    /// sections come back, for 20 s at most (a sender never let go again stops the test, not
    /// hangs it).
    static func stream(_ harness: AdapterHarness, to destination: MACAddress, count: Int) {
        var sent = 0
        let deadline = MonotonicClock.nanoseconds() + 20_000_000_000
        while sent < count, MonotonicClock.nanoseconds() < deadline {
            let frame = BenchFrame.make(from: harness.vsc.macAddress, to: destination, size: 64, sequence: UInt64(sent))
            if harness.vsc.transmit(frame) {
                sent += 1
            } else {
                harness.vsc.flush()
                harness.vsc.poll(copyFrames: false) { _ in }
            }
        }
        harness.vsc.flush()
    }

    @Test("a burst larger than the receiver's buffer and port queue arrives whole: the sender is held, not dropped")
    func fullPortHoldsTheSender() throws {
        let virtualSwitch = VirtualSwitch(name: "p", kind: .private)
        let receiver = try AdapterHarness(switch: virtualSwitch, address: Self.b)
        try receiver.vsc.start()
        // The sender on a thread of its own, with a hold longer than the test, so only the
        // receiver's draining ends it.
        let sender = SenderFacts()
        let count = 6000
        let thread = try OSThread.spawn(name: "sender") { [virtualSwitch] in
            guard let harness = try? AdapterHarness(switch: virtualSwitch, address: Self.a, holdNanoseconds: 60_000_000_000),
                  (try? harness.vsc.start()) != nil else { return }
            sender.value.withLock { $0 = (harness.adapter.port, harness.failures) }
            Self.stream(harness, to: Self.b, count: count)
            while !sender.done.load(ordering: .acquiring) { MonotonicClock.sleep(.milliseconds(1)) }
        }
        defer {
            sender.done.store(true, ordering: .releasing)
            thread.join()
        }
        // The receiver's buffer takes about 1,200 frames and its port 2,048 of one sender's.
        let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
        func held() -> UInt64 { sender.value.withLock { $0.flatMap { virtualSwitch.counters(of: $0.port)?.sendsHeld } } ?? 0 }
        while held() == 0, MonotonicClock.nanoseconds() < deadline { MonotonicClock.sleep(.milliseconds(1)) }
        #expect(held() > 0, "the receiver, not polling, filled its port")
        let frames = receiver.collect(count: count)
        #expect(frames.count == count)
        let firstOutOfOrder = frames.indices.first { BenchFrame.parse(frames[$0], length: frames[$0].count)?.sequence != UInt64($0) }
        #expect(firstOutOfOrder == nil, "in order")
        #expect(virtualSwitch.counters(of: receiver.adapter.port)?.dropped(.queueFull) == 0)
        #expect(sender.value.withLock { $0?.failures.value } == nil && receiver.failures.value == nil)
    }

    @Test("a receiver that stops taking frames holds a sender in vain once, for the hold time; the sender's frames to others go on")
    func stalledPortHoldsOnlyOnce() throws {
        let virtualSwitch = VirtualSwitch(name: "p", kind: .private)
        // A hold long enough that b's worker, while b's buffer still has room, drains in time
        // even on a loaded host: only the hold on a b that takes nothing runs out.
        let sender = try AdapterHarness(switch: virtualSwitch, address: Self.a, holdNanoseconds: 300_000_000)
        let stalled = try AdapterHarness(switch: virtualSwitch, address: Self.b)
        let other = try AdapterHarness(switch: virtualSwitch, address: Self.c)
        try sender.vsc.start()
        try stalled.vsc.start()
        try other.vsc.start()
        // b never polls: its buffer and its port fill, and the rest of the stream is dropped there.
        let start = MonotonicClock.nanoseconds()
        Self.stream(sender, to: Self.b, count: 6000)
        let frame = BenchFrame.make(from: Self.a, to: Self.c, size: 100, sequence: 1)
        while !sender.vsc.transmit(frame) {
            sender.vsc.flush()
            sender.vsc.poll(copyFrames: false) { _ in }
        }
        sender.vsc.flush()
        #expect(other.collect(count: 1) == [frame])
        let elapsed = MonotonicClock.nanoseconds() - start
        let stalledPort = virtualSwitch.counters(of: stalled.adapter.port)
        #expect(stalledPort?.holdsTimedOut == 1, "held once, then b holds no one until it has drained")
        #expect(stalledPort?.dropped(.queueFull) ?? 0 > 0)
        // Earlier holds, while b's buffer still had room, ended when b drained.
        let holds = virtualSwitch.counters(of: sender.adapter.port)?.sendsHeld ?? 0
        #expect(holds >= 1)
        #expect(elapsed < 5_000_000_000, "one 300 ms hold in vain, not one per batch (\(elapsed / 1_000_000) ms)")
        sender.adapter.reportFacts()
        #expect(sender.host.facts["nic.00:15:5d:00:00:0a.port_sends_held"] == "\(holds)")
        stalled.adapter.reportFacts()
        #expect(stalled.host.facts["nic.00:15:5d:00:00:0b.port_holds_timed_out"] == "1")
    }

    @Test("link down and up reach the guest as RNDIS media indications")
    func linkChanges() throws {
        let virtualSwitch = VirtualSwitch(name: "p", kind: .private)
        let harness = try AdapterHarness(switch: virtualSwitch, address: Self.a)
        try harness.vsc.start()
        harness.adapter.setLinkConnected(false)
        let deadline = MonotonicClock.nanoseconds() + 5_000_000_000
        while harness.vsc.linkConnected && MonotonicClock.nanoseconds() < deadline {
            harness.vsc.poll(copyFrames: false) { _ in }
        }
        #expect(!harness.vsc.linkConnected)
        harness.adapter.setLinkConnected(true)
        while !harness.vsc.linkConnected && MonotonicClock.nanoseconds() < deadline + 5_000_000_000 {
            harness.vsc.poll(copyFrames: false) { _ in }
        }
        #expect(harness.vsc.linkConnected)
    }

    @Test("a burst of link changes faster than the worker runs ends in the last state and leaves every receive sub-allocation free")
    func linkChangeBurstKeepsTheReceiveBuffer() throws {
        let virtualSwitch = VirtualSwitch(name: "p", kind: .private)
        let harness = try AdapterHarness(switch: virtualSwitch, address: Self.a, receivePages: 64)
        try harness.vsc.start()
        let total = try #require(harness.adapter.withVSP { vsp, _ in vsp.receiveLayout?.count })
        // The guest reads nothing meanwhile: each indication sent holds a sub-allocation until it does.
        // Down, up, down, … up: the last change brings the link up.
        for round in 1...(2 * total) { harness.adapter.setLinkConnected(round % 2 == 0) }
        let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
        var free = 0
        var up = false
        while MonotonicClock.nanoseconds() < deadline {
            harness.vsc.poll(copyFrames: false) { _ in }
            free = harness.adapter.withVSP { vsp, _ in vsp.receiveSubAllocationsFree(on: 0) }
            up = harness.vsc.linkConnected
            if free == total, up { break }
        }
        #expect(up, "the last change was up")
        #expect(free == total, "\(total - free) of \(total) sub-allocations never came back")
    }

    @Test("a guest cannot take another NIC's address: SET NetworkAddress fails (spoofing off, Hyper-V's default) and the port keeps its own")
    func macChangeRefusedByTheAdapter() throws {
        let (first, second) = try Self.startedPair()
        let id = first.vsc.requestID()
        let reply = try first.vsc.control(.set(RNDISRequest(requestID: id, oid: .rndisConfigParameter,
                                                            information: RNDISConfigParameter.networkAddress(Self.b).bytes)),
                                          what: "NetworkAddress")
        #expect(reply == .setComplete(requestID: id, status: .failure))
        let address = first.adapter.withVSP { vsp, _ in vsp.macAddress }
        #expect(address == Self.a)
        // Frames for b still reach b, not the guest that asked for b's address.
        let frame = BenchFrame.make(from: Self.a, to: Self.b, size: 100, sequence: 1)
        let queued = first.vsc.transmit(frame)
        #expect(queued)
        first.vsc.flush()
        #expect(second.collect(count: 1) == [frame])
    }

    @Test("a receive buffer whose GPADL overlaps the rings is refused, and counted")
    func overlappingReceiveBufferRefused() throws {
        let virtualSwitch = VirtualSwitch(name: "p", kind: .private)
        let harness = try AdapterHarness(switch: virtualSwitch, address: Self.a, receiveOverlapsRing: true)
        #expect(throws: NetworkVSCError.refused("the receive buffer")) { try harness.vsc.start() }
        harness.adapter.reportFacts()
        #expect(harness.host.facts["nic.00:15:5d:00:00:0a.guest_errors"] != "0")
        #expect(harness.failures.value == nil, "the channel stays open")
    }

    @Test("a torn-down receive buffer is never written again: the revoke waits for the adapter, later frames drop")
    func teardownStopsUse() throws {
        let (first, second) = try Self.startedPair()
        let frame = BenchFrame.make(from: Self.a, to: Self.b, size: 200, sequence: 0)
        let queued = first.vsc.transmit(frame)
        #expect(queued)
        first.vsc.flush()
        #expect(second.collect(count: 1).count == 1)
        // The guest tears the buffer down (Linux: REVOKE_RECV_BUF, then GPADL_TEARDOWN).
        #expect(second.registry.revoke(handle: AdapterHarness.receiveGPADL))
        try second.memory.fill(0xEE, at: GuestPhysicalAddress(second.receive.physicalAddress), count: second.receive.size)
        for index in 1...50 {
            _ = first.vsc.transmit(BenchFrame.make(from: Self.a, to: Self.b, size: 200, sequence: UInt64(index)))
        }
        first.vsc.flush()
        MonotonicClock.sleep(.milliseconds(300))
        let untouched = try second.memory.read(at: GuestPhysicalAddress(second.receive.physicalAddress), count: second.receive.size)
        #expect(untouched.allSatisfy { $0 == 0xEE })
        second.adapter.reportFacts()
        #expect(Int(second.host.facts["nic.00:15:5d:00:00:0b.rx_frames"] ?? "") == 1)
        // Every lease the adapter took meanwhile (the send buffer's, once the receive buffer's
        // could no longer be had) was given back: its teardown does not wait for a next packet.
        #expect(second.registry.revoke(handle: AdapterHarness.sendGPADL, timeoutNanoseconds: 10_000_000_000))
    }
}

extension AdapterTests {
    @Test("leases a sending channel keeps from one packet to the next are given back before its worker idles: a teardown right after does not wait")
    func keptLeasesReturnedWhenIdle() throws {
        let (first, second) = try Self.startedPair()
        // More packets than one taking of the leases covers (`KeptLeases.maximumUses`).
        for index in 0..<150 {
            _ = first.vsc.transmit(BenchFrame.make(from: Self.a, to: Self.b, size: 200, sequence: UInt64(index)))
            if index % 16 == 15 { first.vsc.flush() }
        }
        first.vsc.flush()
        #expect(second.collect(count: 150).count == 150)
        #expect(first.registry.revoke(handle: AdapterHarness.sendGPADL, timeoutNanoseconds: 10_000_000_000))
        #expect(first.registry.revoke(handle: AdapterHarness.receiveGPADL, timeoutNanoseconds: 10_000_000_000))
    }

    /// A child that writes garbage into its NIC's channel — NVSP messages with random fields,
    /// GPA-direct ranges anywhere, completions for nothing, packet types netvsc never uses —
    /// gets failures and counters; the parent stays up and another pair of NICs on the same
    /// switch keeps exchanging frames intact.
    @Test("a hostile NIC's garbage is counted and stalls nobody else on the switch")
    func hostileNICDoesNotDisturbOthers() throws {
        let virtualSwitch = VirtualSwitch(name: "p", kind: .private)
        let hostile = try AdapterHarness(switch: virtualSwitch, address: Self.c)
        try hostile.vsc.start()
        let first = try AdapterHarness(switch: virtualSwitch, address: Self.a)
        let second = try AdapterHarness(switch: virtualSwitch, address: Self.b)
        try first.vsc.start()
        try second.vsc.start()
        var random = NetworkVSPFuzzer.Generator(seed: 42)
        let types: [PacketType] = [.inband, .gpaDirect, .completion, .transferPages, PacketType(rawValue: 0x2A)]
        var expected: [[UInt8]] = []
        var received: [[UInt8]] = []
        for round in 0..<2000 {
            var message = NVSPMessage.sendRNDISPacket(channel: .data, sectionIndex: UInt32.random(in: 0...300, using: &random),
                                                      sectionSize: UInt32.random(in: 0...7000, using: &random)).bytes()
            if Bool.random(using: &random) { message[Int.random(in: 0..<message.count, using: &random)] ^= 0xFF }
            if round % 7 == 0 { message = NVSPMessage.revokeSendBuffer(id: 0).bytes() }
            let type = types[Int.random(in: 0..<types.count, using: &random)]
            var header: [UInt8] = []
            if type == .gpaDirect || type == .transferPages {
                let pages = (0..<Int.random(in: 1...3, using: &random)).map { _ in UInt64.random(in: 0...5000, using: &random) }
                header = GPADirectHeader(ranges: [GPARange(byteCount: UInt32.random(in: 0...12000, using: &random),
                                                           byteOffset: UInt32.random(in: 0...5000, using: &random), pfns: pages)]).bytes
            }
            while !hostile.vsc.channel.stage(type, flags: .completionRequested, transactionID: UInt64(round), header: header,
                                             payload: message) {
                hostile.vsc.channel.publish()
                _ = hostile.vsc.poll(copyFrames: false) { _ in }
            }
            if round % 50 == 0 {
                hostile.vsc.channel.publish()
                let frame = BenchFrame.make(from: Self.a, to: Self.b, size: 200, sequence: UInt64(round))
                if first.vsc.transmit(frame) { expected.append(frame) }
                first.vsc.flush()
                _ = second.vsc.poll(copyFrames: true) { received.append($0.bytes) }
            }
        }
        hostile.vsc.channel.publish()
        received += second.collect(count: expected.count - received.count)
        #expect(received == expected)
        hostile.adapter.reportFacts()
        #expect(Int(hostile.host.facts["nic.00:15:5d:00:00:0c.guest_errors"] ?? "") ?? 0 > 0)
        #expect(first.failures.value == nil && second.failures.value == nil)
    }
}
