import LinuxSupport
import NetworkProtocol
import NetworkVSC
import Testing
import VirtualSwitch

/// A sender held by a child port's full queue instead of having its frames dropped: when a hold
/// begins, what wakes it, and what bounds it (Docs/network.md, "Holding senders").
@Suite struct SwitchHoldTests {
    static let a = MACAddress(0x00, 0x15, 0x5D, 0, 0, 0x0A)
    static let b = MACAddress(0x00, 0x15, 0x5D, 0, 0, 0x0B)
    static let c = MACAddress(0x00, 0x15, 0x5D, 0, 0, 0x0C)

    /// Counts its wake-ups (with the NIC tests' `TestCounter`).
    final class Waker: Sendable {
        let count = TestCounter()
        var waiter: SwitchHoldWaiter { SwitchHoldWaiter(id: ObjectIdentifier(self)) { [count] in count.add() } }
        var woken: UInt64 { count.value }
    }

    static func frame(from source: MACAddress, to destination: MACAddress, size: Int = 64) -> NetworkFrame {
        NetworkFrame(bytes: BenchFrame.make(from: source, to: destination, size: size, sequence: 0))
    }

    /// Child ports for a, b and c (b's queue 8 frames: a sender's share is 4), and a host port.
    static func switchCore() -> (SwitchCore, a: SwitchPortID, b: SwitchPortID, c: SwitchPortID, host: SwitchPortID) {
        var core = SwitchCore(name: "private", kind: .internal(hostInterface: "hvtap0"))
        func child(_ address: MACAddress, queue: Int = 1024) -> SwitchPortConfiguration {
            var configuration = SwitchPortConfiguration(name: address.text, kind: .child, macAddress: address)
            configuration.packetFilter = .linuxDefault
            configuration.queueFrameLimit = queue
            return configuration
        }
        let a = core.addPort(child(a))
        let b = core.addPort(child(b, queue: 8))
        let c = core.addPort(child(c))
        var host = SwitchPortConfiguration(name: "host", kind: .host)
        host.queueFrameLimit = 8
        let hostPort = core.addPort(host)
        // b and c announce themselves, so frames to them are not flooded.
        _ = core.forward(frame(from: Self.b, to: .broadcast), from: b, now: 1)
        _ = core.forward(frame(from: Self.c, to: .broadcast), from: c, now: 1)
        _ = core.dequeue(a)
        _ = core.dequeue(c)
        _ = core.dequeue(b)
        _ = core.dequeue(hostPort)
        return (core, a, b, c, hostPort)
    }

    @Test("a child port holds the sender whose share of its queue is full, once, and wakes it when drained to a quarter")
    func holdAndWake() {
        var (core, a, b, _, _) = Self.switchCore()
        let toB = Self.frame(from: Self.a, to: Self.b)
        for _ in 0..<4 {
            #expect(core.holdingPort(for: toB, from: a, now: 2) == nil)
            _ = core.forward(toB, from: a, now: 2)
        }
        #expect(core.holdingPort(for: toB, from: a, now: 2) == b, "a's share (half of 8) is full")
        let waker = Waker()
        core.hold(waker.waiter, on: b, for: a)
        core.hold(waker.waiter, on: b, for: a)
        #expect(core.counters(of: a)?.sendsHeld == 1, "held once however often it asks")
        var woken: [SwitchHoldWaiter] = []
        _ = core.dequeue(b, limit: 1, waking: &woken)
        #expect(woken.isEmpty, "3 frames left: more than a quarter of 8")
        _ = core.dequeue(b, limit: 1, waking: &woken)
        #expect(woken.map(\.id) == [ObjectIdentifier(waker)])
        woken = []
        _ = core.dequeue(b, waking: &woken)
        #expect(woken.isEmpty, "woken once per hold")
        #expect(core.counters(of: b)?.dropped(.queueFull) == 0)
    }

    @Test("an LSO frame whose MSS asks for more segments than a guest's port ever takes is not held on an empty queue")
    func aTinyMSSIsNotHeldOnAnEmptyQueue() {
        var (core, a, _, c, _) = Self.switchCore()
        for mss in [1, 63, 64, 200] {
            var frame = Self.frame(from: Self.a, to: Self.c, size: 65_000)
            frame.offload.segmentation = .init(maximumSegmentSize: mss, transportOffset: 34, isIPv6: false)
            #expect(SwitchCore.holdNeed(of: frame).count <= SoftwareOffload.maximumSegments)
            #expect(core.holdingPort(for: frame, from: a, now: 2) == nil, "c's queue is empty (MSS \(mss))")
        }
        #expect(core.counters(of: c)?.holdsTimedOut == 0)
    }

    @Test("no hold for a host port, a port whose filter refuses the frame, or a port with room")
    func whatDoesNotHold() {
        var (core, a, b, c, host) = Self.switchCore()
        // The host port's queue full (no pump drains it in this test): frames to it drop.
        let toC = Self.frame(from: Self.a, to: Self.c)
        var hostFull = core
        for _ in 0..<8 { _ = hostFull.forward(Self.frame(from: Self.a, to: MACAddress(0x00, 0x15, 0x5D, 0, 0, 0x77)), from: a, now: 2) }
        #expect(hostFull.queuedFrames(for: host) == 4 && hostFull.queuedFrames(for: b) == 0)
        #expect(hostFull.holdingPort(for: Self.frame(from: Self.a, to: MACAddress(0x00, 0x15, 0x5D, 0, 0, 0x77)), from: a, now: 2) == nil,
                "b and c refuse a directed frame for another address, and the host port never holds")
        // c has room.
        #expect(core.holdingPort(for: toC, from: a, now: 2) == nil)
        // A broadcast reaches b, whose share is full: held by b.
        for _ in 0..<4 { _ = core.forward(Self.frame(from: Self.a, to: Self.b), from: a, now: 2) }
        #expect(core.holdingPort(for: Self.frame(from: Self.a, to: .broadcast), from: a, now: 2) == b)
        // Once b's filter refuses broadcasts, its full queue does not matter to them.
        core.setPacketFilter([.directed], for: b)
        #expect(core.holdingPort(for: Self.frame(from: Self.a, to: .broadcast), from: a, now: 2) == nil)
        #expect(core.queuedFrames(for: c) == 0)
    }

    @Test("a hold that ran out: the port holds no one and its waiters are woken, until it has drained to a quarter")
    func endedHolds() {
        var (core, a, b, c, _) = Self.switchCore()
        let toB = Self.frame(from: Self.a, to: Self.b)
        for _ in 0..<4 { _ = core.forward(toB, from: a, now: 2) }
        let waker = Waker()
        core.hold(waker.waiter, on: b, for: a)
        let ended = core.endHolds(on: b)
        #expect(ended.map(\.id) == [ObjectIdentifier(waker)])
        #expect(core.counters(of: b)?.holdsTimedOut == 1)
        #expect(core.holdingPort(for: toB, from: a, now: 2) == nil, "b holds no one")
        _ = core.forward(toB, from: a, now: 2)
        #expect(core.counters(of: b)?.dropped(.queueFull) == 1, "so the frame drops at b's full queue")
        // Draining to more than a quarter of the queue is not enough; to a quarter is.
        _ = core.dequeue(b, limit: 1)
        _ = core.forward(toB, from: a, now: 2)
        #expect(core.holdingPort(for: toB, from: a, now: 2) == nil, "3 of 8 were left")
        _ = core.dequeue(b, limit: 2)
        for _ in 0..<2 { _ = core.forward(toB, from: a, now: 2) }
        #expect(core.holdingPort(for: toB, from: a, now: 2) == b, "b drained to 2 of 8, so it holds again")
        #expect(core.endHolds(on: b).isEmpty && core.counters(of: b)?.holdsTimedOut == 2)
        #expect(core.queuedFrames(for: c) == 0)
    }

    /// One guest's several NICs that all stop draining cost a flooding sender one hold in vain,
    /// not one for each NIC in turn.
    @Test("when a sender's hold runs out, every port its own full share would hold it on stops holding, not just the one")
    func anEndedHoldEndsTheSendersOtherFullShares() {
        var core = SwitchCore(name: "private", kind: .private)
        // The ports' default queues (4096 frames, 4 MiB): with full-size frames the sender's byte
        // share (2 MiB) fills before its frame share.
        func child(_ last: UInt8) -> SwitchPortConfiguration {
            var configuration = SwitchPortConfiguration(name: "p\(last)", kind: .child,
                                                        macAddress: MACAddress(0x00, 0x15, 0x5D, 0, 0, last))
            configuration.packetFilter = .linuxDefault
            return configuration
        }
        let sender = core.addPort(child(0x0A))
        let hostile = (0..<3).map { core.addPort(child(0x20 + UInt8($0))) }
        let bystander = core.addPort(child(0x30))
        let broadcast = Self.frame(from: Self.a, to: .broadcast, size: 1514)
        var sent = 0
        while core.holdingPort(for: broadcast, from: sender, now: 2) == nil, sent < 10_000 {
            _ = core.forward(broadcast, from: sender, now: 2)
            sent += 1
            // The bystander drains; the hostile guest's three ports do not.
            _ = core.dequeue(bystander)
        }
        #expect(sent < SwitchPortConfiguration(name: "x", kind: .child).queueFrameLimit / 2, "held by bytes, not frames")
        #expect(core.holdingPort(for: broadcast, from: sender, now: 2) == hostile[0])
        let waker = Waker()
        core.hold(waker.waiter, on: hostile[0], for: sender)
        #expect(core.endHolds(on: hostile[0], sender: sender, need: SwitchCore.holdNeed(of: broadcast)).map(\.id)
                == [ObjectIdentifier(waker)])
        #expect(core.holdingPort(for: broadcast, from: sender, now: 2) == nil, "not held again by the next hostile port")
        #expect(hostile.allSatisfy { core.counters(of: $0)?.holdsTimedOut == 1 })
        #expect(core.counters(of: bystander)?.holdsTimedOut == 0, "a port with room keeps holding")
        _ = core.forward(broadcast, from: sender, now: 2)
        #expect(core.queuedFrames(for: bystander) == 1, "the bystander still gets the flood")
    }

    @Test("a sender is held only by its own full share: a queue other senders filled turns its frame away")
    func onlyTheSendersOwnShareHolds() {
        var (core, a, b, c, _) = Self.switchCore()
        // c fills its half of b's queue, then a fills the rest: b's queue is full.
        for _ in 0..<4 { _ = core.forward(Self.frame(from: Self.c, to: Self.b), from: c, now: 2) }
        for _ in 0..<4 { _ = core.forward(Self.frame(from: Self.a, to: Self.b), from: a, now: 2) }
        #expect(core.holdingPort(for: Self.frame(from: Self.a, to: Self.b), from: a, now: 2) == b, "a's own share is full")
        _ = core.dequeue(b, limit: 1)
        #expect(core.holdingPort(for: Self.frame(from: Self.c, to: .broadcast), from: c, now: 2) == nil,
                "c has room in its share, so its broadcast is not held (the queue's own limit may drop it)")
    }

    @Test("half of a queue's bytes is one sender's share too, and holds it")
    func byteShare() {
        var core = SwitchCore(name: "private", kind: .private)
        var configuration = SwitchPortConfiguration(name: "b", kind: .child, macAddress: Self.b)
        configuration.packetFilter = .linuxDefault
        configuration.queueByteLimit = 4 * 1000
        configuration.maximumFrameSize = 9018
        let b = core.addPort(configuration)
        var sender = SwitchPortConfiguration(name: "a", kind: .child, macAddress: Self.a)
        sender.maximumFrameSize = 9018
        let a = core.addPort(sender)
        let big = Self.frame(from: Self.a, to: Self.b, size: 1000)
        for _ in 0..<3 { _ = core.forward(big, from: a, now: 1) }
        #expect(core.queuedFrames(for: b) == 2, "2,000 of 4,000 bytes is a's share")
        #expect(core.counters(of: b)?.dropped(.queueFull) == 1)
        #expect(core.holdingPort(for: big, from: a, now: 1) == b)
        // One frame larger than the share still goes in when the sender has none queued.
        _ = core.dequeue(b)
        _ = core.forward(Self.frame(from: Self.a, to: Self.b, size: 3000), from: a, now: 1)
        #expect(core.queuedFrames(for: b) == 1)
    }

    @Test("no two ports hold each other: a port whose sender is held holds no one, and a sender others wait for is not held")
    func noMutualHolds() {
        var (core, a, b, c, _) = Self.switchCore()
        var configuration = SwitchPortConfiguration(name: "d", kind: .child, macAddress: MACAddress(0x00, 0x15, 0x5D, 0, 0, 0x0D))
        configuration.packetFilter = .linuxDefault
        configuration.queueFrameLimit = 8
        let d = core.addPort(configuration)
        let dAddress = MACAddress(0x00, 0x15, 0x5D, 0, 0, 0x0D)
        _ = core.forward(Self.frame(from: dAddress, to: .broadcast), from: d, now: 1)
        for port in [a, b, c] { _ = core.dequeue(port) }
        // a fills its share of b's queue and is held there.
        for _ in 0..<4 { _ = core.forward(Self.frame(from: Self.a, to: Self.b), from: a, now: 2) }
        let heldA = Waker()
        core.hold(heldA.waiter, on: b, for: a)
        // b fills its share of a's queue (512 of 1024): a's own sender is held, so a's port
        // holds no one.
        for _ in 0..<512 { _ = core.forward(Self.frame(from: Self.b, to: Self.a), from: b, now: 2) }
        #expect(core.holdingPort(for: Self.frame(from: Self.b, to: Self.a), from: b, now: 2) == nil)
        // b, which a waits for, is not held by d's full queue either.
        for _ in 0..<4 { _ = core.forward(Self.frame(from: Self.b, to: dAddress), from: b, now: 2) }
        #expect(core.holdingPort(for: Self.frame(from: Self.b, to: dAddress), from: b, now: 2) == nil)
        // c, which no one waits for, is.
        for _ in 0..<4 { _ = core.forward(Self.frame(from: Self.c, to: dAddress), from: c, now: 2) }
        #expect(core.holdingPort(for: Self.frame(from: Self.c, to: dAddress), from: c, now: 2) == d,
                "c's own share of d's queue is full")
        // Once a's hold ends, its port holds senders again.
        var woken: [SwitchHoldWaiter] = []
        _ = core.dequeue(b, waking: &woken)
        #expect(woken.map(\.id) == [ObjectIdentifier(heldA)])
        #expect(core.holdingPort(for: Self.frame(from: Self.b, to: Self.a), from: b, now: 2) == a)
    }

    @Test("a closing channel's hold is taken off the port without waking it, and no longer counts")
    func cancelledHold() {
        var (core, a, b, _, _) = Self.switchCore()
        for _ in 0..<4 { _ = core.forward(Self.frame(from: Self.a, to: Self.b), from: a, now: 2) }
        for _ in 0..<512 { _ = core.forward(Self.frame(from: Self.b, to: Self.a), from: b, now: 2) }
        let waker = Waker()
        core.hold(waker.waiter, on: b, for: a)
        #expect(core.holdingPort(for: Self.frame(from: Self.b, to: Self.a), from: b, now: 2) == nil, "a's sender is held")
        core.cancelHold(ObjectIdentifier(waker), on: b)
        #expect(core.holdingPort(for: Self.frame(from: Self.b, to: Self.a), from: b, now: 2) == a, "no longer")
        var woken: [SwitchHoldWaiter] = []
        _ = core.dequeue(b, waking: &woken)
        #expect(woken.isEmpty && waker.woken == 0)
    }

    @Test("removing a port gives back the senders it held")
    func removedPortWakes() {
        var (core, a, b, _, _) = Self.switchCore()
        for _ in 0..<4 { _ = core.forward(Self.frame(from: Self.a, to: Self.b), from: a, now: 2) }
        let waker = Waker()
        core.hold(waker.waiter, on: b, for: a)
        #expect(core.removePort(b).map(\.id) == [ObjectIdentifier(waker)])
    }

    /// A private switch with child ports for a (the sender) and b (the receiver, whose queue
    /// holds 8 frames: a sender's share is 4).
    static func senderAndReceiver() throws -> (VirtualSwitch, a: SwitchPortID, b: SwitchPortID) {
        let virtualSwitch = VirtualSwitch(name: "p", kind: .private)
        var sender = SwitchPortConfiguration(name: "a", kind: .child, macAddress: Self.a)
        sender.packetFilter = .linuxDefault
        var receiver = SwitchPortConfiguration(name: "b", kind: .child, macAddress: Self.b)
        receiver.packetFilter = .linuxDefault
        receiver.queueFrameLimit = 8
        let (a, _) = try virtualSwitch.addPort(sender)
        let (b, _) = try virtualSwitch.addPort(receiver)
        return (virtualSwitch, a, b)
    }

    @Test("send(holding:) stops at the first frame a full port would turn away, keeps the rest in order, and is woken by the receiver")
    func sendHolding() throws {
        let (virtualSwitch, a, b) = try Self.senderAndReceiver()
        let waker = Waker()
        var frames = (0..<10).map { NetworkFrame(bytes: BenchFrame.make(from: Self.a, to: Self.b, size: 64, sequence: UInt64($0))) }
        let all = frames.map(\.bytes)
        var outcome = virtualSwitch.send(holding: &frames, from: a, waiter: waker.waiter)
        #expect(outcome.heldBy == b && !outcome.left)
        #expect(frames.map(\.bytes) == Array(all[4...]), "4 switched (a's share), 6 kept in order")
        #expect(virtualSwitch.receive(for: b, limit: 1).count == 1 && waker.woken == 0)
        var received = virtualSwitch.receive(for: b, limit: 1).map(\.bytes)
        #expect(waker.woken == 1, "2 left of 8: drained to a quarter")
        outcome = virtualSwitch.send(holding: &frames, from: a, waiter: waker.waiter)
        #expect(outcome.heldBy == b && frames.count == 4)
        virtualSwitch.endHolds(on: b)
        #expect(waker.woken == 2)
        outcome = virtualSwitch.send(holding: &frames, from: a, waiter: waker.waiter)
        #expect(outcome.heldBy == nil && frames.isEmpty, "b holds no one now: the rest drop at its full queue")
        #expect(virtualSwitch.counters(of: b)?.dropped(.queueFull) == 4)
        received += virtualSwitch.receive(for: b).map(\.bytes)
        #expect(received == [all[1], all[2], all[3], all[4], all[5]], "every frame that went on, in order")
    }

    /// A held sender that sends again before its port woke it (a wake that came late, after it
    /// was held elsewhere; a partial drain that made room) is held nowhere once its frames fit:
    /// left registered, it would stay counted as held, and be woken for nothing.
    @Test("a sender that sends again is taken off the port that held it")
    func sendingAgainEndsTheOldHold() throws {
        let (virtualSwitch, a, b) = try Self.senderAndReceiver()
        let waker = Waker()
        var frames = (0..<6).map { NetworkFrame(bytes: BenchFrame.make(from: Self.a, to: Self.b, size: 64, sequence: UInt64($0))) }
        #expect(virtualSwitch.send(holding: &frames, from: a, waiter: waker.waiter).heldBy == b)
        // b takes one: 3 of 8 left, not yet a quarter, so no wake, but a's share has room for one.
        #expect(virtualSwitch.receive(for: b, limit: 1).count == 1 && waker.woken == 0)
        var one = [frames.removeFirst()]
        #expect(virtualSwitch.send(holding: &one, from: a, waiter: waker.waiter).heldBy == nil && one.isEmpty)
        _ = virtualSwitch.receive(for: b)
        #expect(waker.woken == 0, "b drained, but a was no longer held there")
        #expect(virtualSwitch.counters(of: a)?.sendsHeld == 1)
    }
}
