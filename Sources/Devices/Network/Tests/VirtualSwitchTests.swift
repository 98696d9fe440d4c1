import Glibc
import LinuxSupport
import NetworkProtocol
import Synchronization
import Testing
import VirtualSwitch

/// Learning, flooding, filters, counters and queue bounds of the switch core.
@Suite struct VirtualSwitchTests {
    static let a = MACAddress(0x00, 0x15, 0x5D, 0, 0, 0x0A)
    static let b = MACAddress(0x00, 0x15, 0x5D, 0, 0, 0x0B)
    static let c = MACAddress(0x00, 0x15, 0x5D, 0, 0, 0x0C)
    static let multicast = MACAddress(0x01, 0x00, 0x5E, 0, 0, 0xFB)
    /// An address no port owns or has sent from.
    static let unknown = MACAddress(0x02, 0, 0, 0, 0, 0x0F)

    struct Fixture {
        var core = SwitchCore(name: "Default Switch", kind: .internal(hostInterface: "hvtap0"))
        var ports: [SwitchPortID] = []
        var host: SwitchPortID

        init(filter: PacketFilter = .linuxDefault, children: [MACAddress] = [a, b, c]) {
            host = core.addPort(SwitchPortConfiguration(name: "host", kind: .host))
            for mac in children {
                var configuration = SwitchPortConfiguration(name: "child", kind: .child, macAddress: mac)
                configuration.packetFilter = filter
                ports.append(core.addPort(configuration))
            }
        }

        mutating func send(_ bytes: [UInt8], from port: SwitchPortID, now: UInt64 = 1, offload: FrameOffload = .none)
            -> [SwitchPortID]
        {
            core.forward(NetworkFrame(bytes: bytes, offload: offload), from: port, now: now)
        }

        func queued() -> [Int] { ([host] + ports).map { core.queuedFrames(for: $0) } }
    }

    @Test("unknown unicast floods; after learning, frames go only to the learned port")
    func learning() {
        var fixture = Fixture()
        let pa = fixture.ports[0]
        // Behind the host port, not heard from yet.
        let d = MACAddress(0x02, 0, 0, 0, 0, 0x0D)
        let woken = fixture.send(ethernetFrame(from: Self.a, to: d), from: pa)
        // Flooded: the host takes everything, the other children's directed filters refuse it.
        #expect(woken == [fixture.host])
        #expect(fixture.queued() == [1, 0, 0, 0])
        #expect(fixture.core.counters(of: fixture.ports[1])?.dropped(.filtered) == 1)
        _ = fixture.send(ethernetFrame(from: d, to: Self.a), from: fixture.host)
        #expect(fixture.queued() == [1, 1, 0, 0], "d→a went to a only")
        #expect(fixture.core.learnedPort(of: d, now: 1) == fixture.host)
        #expect(fixture.core.learnedPort(of: Self.a, now: 1) == pa)
        _ = fixture.send(ethernetFrame(from: Self.a, to: d), from: pa)
        #expect(fixture.queued() == [2, 1, 0, 0], "a→d went to the host only")
        #expect(fixture.core.counters(of: fixture.ports[1])?.dropped(.filtered) == 1, "not flooded again")
        #expect(fixture.core.dequeue(pa).map(\.bytes) == [ethernetFrame(from: d, to: Self.a)])
    }

    @Test("a child that may not spoof owns its address: frames to it reach it before it has spoken and after the table evicted it, and no other port may claim it")
    func childrenOwnTheirAddresses() {
        var fixture = Fixture()
        let (pa, pb) = (fixture.ports[0], fixture.ports[1])
        _ = fixture.send(ethernetFrame(from: Self.a, to: Self.b), from: pa)
        #expect(fixture.queued() == [0, 0, 1, 0], "to b only, though b has not spoken")
        // The host port (an external switch's LAN) claims b's address: dropped, not learned.
        _ = fixture.send(ethernetFrame(from: Self.b, to: Self.a), from: fixture.host)
        #expect(fixture.core.counters(of: fixture.host)?.dropped(.spoofedSource) == 1)
        #expect(fixture.core.learnedPort(of: Self.b, now: 1) == nil)
        _ = fixture.send(ethernetFrame(from: Self.a, to: Self.b), from: pa)
        #expect(fixture.queued() == [0, 0, 2, 0], "b's traffic still reaches b")
        // A child allowed to spoof may not claim it either.
        var spoofing = SwitchPortConfiguration(name: "spoofing", kind: .child, macAddress: MACAddress(0x02, 0, 0, 0, 0, 0x0E))
        spoofing.allowsMACSpoofing = true
        let pe = fixture.core.addPort(spoofing)
        _ = fixture.send(ethernetFrame(from: Self.a, to: .broadcast), from: pe)
        #expect(fixture.core.counters(of: pe)?.dropped(.spoofedSource) == 1)
        // Once b's port is gone, its address is no one's.
        fixture.core.removePort(pb)
        _ = fixture.send(ethernetFrame(from: Self.b, to: Self.a), from: fixture.host)
        #expect(fixture.core.counters(of: fixture.host)?.dropped(.spoofedSource) == 1)
        #expect(fixture.core.learnedPort(of: Self.b, now: 1) == fixture.host)

        // A table full of a LAN's addresses evicts what a child's port taught it; frames to the
        // child still go to it alone.
        var small = SwitchCore(name: "external", kind: .external(uplinkInterface: "eth0"), tableCapacity: 4)
        let uplink = small.addPort(SwitchPortConfiguration(name: "uplink", kind: .host))
        var promiscuous = SwitchPortConfiguration(name: "a", kind: .child, macAddress: Self.a)
        promiscuous.packetFilter = [.promiscuous]
        let qa = small.addPort(promiscuous)
        promiscuous.macAddress = Self.b
        let qb = small.addPort(promiscuous)
        _ = small.forward(NetworkFrame(bytes: ethernetFrame(from: Self.b, to: .broadcast)), from: qb, now: 1)
        for index in 0..<10 {
            _ = small.forward(NetworkFrame(bytes: ethernetFrame(from: MACAddress(rawValue: 0x0200_0000_0100 + UInt64(index)),
                                                                to: Self.a)), from: uplink, now: 2)
        }
        #expect(small.learnedPort(of: Self.b, now: 3) == nil, "evicted")
        let uplinkQueued = small.queuedFrames(for: uplink)
        _ = small.forward(NetworkFrame(bytes: ethernetFrame(from: Self.a, to: Self.b)), from: qa, now: 3)
        #expect(small.queuedFrames(for: qb) == 1 && small.queuedFrames(for: uplink) == uplinkQueued)
    }

    @Test("a child port that may not spoof cannot take another port's address by changing its own, nor its traffic")
    func macChangeCannotTakeAnotherPortsAddress() {
        var fixture = Fixture()
        let (pa, pb) = (fixture.ports[0], fixture.ports[1])
        _ = fixture.send(ethernetFrame(from: Self.b, to: .broadcast), from: pb)
        #expect(fixture.core.learnedPort(of: Self.b, now: 1) == pb)
        let changed = fixture.core.setMACAddress(Self.b, for: pa)
        #expect(!changed, "a's address stays its own")
        _ = fixture.send(ethernetFrame(from: Self.b, to: .broadcast), from: pa)
        #expect(fixture.core.counters(of: pa)?.dropped(.spoofedSource) == 1)
        #expect(fixture.core.learnedPort(of: Self.b, now: 1) == pb, "b's traffic still goes to b")
        // A port allowed to spoof (and the host's) may change its address.
        var spoofing = SwitchPortConfiguration(name: "spoofing", kind: .child, macAddress: Self.c)
        spoofing.allowsMACSpoofing = true
        let pd = fixture.core.addPort(spoofing)
        let spoofer = fixture.core.setMACAddress(MACAddress(0x02, 0, 0, 0, 0, 0x0D), for: pd)
        let host = fixture.core.setMACAddress(MACAddress(0x02, 0, 0, 0, 0, 0x0E), for: fixture.host)
        #expect(spoofer && host)
    }

    @Test("a child's port is untagged unless in trunk mode: its guest's VLAN-tagged frames (in line or as metadata) are dropped, and tagged frames do not reach it")
    func untaggedChildPortsDropVLANTags() {
        var fixture = Fixture(children: [Self.a, Self.b])
        let (pa, pb) = (fixture.ports[0], fixture.ports[1])
        let d = MACAddress(0x02, 0, 0, 0, 0, 0x0D)
        let inline = ethernetFrame(from: Self.a, to: d, etherType: 0x8100)
        let qinq = ethernetFrame(from: Self.a, to: d, etherType: 0x88A8)
        #expect(fixture.send(inline, from: pa).isEmpty)
        #expect(fixture.send(qinq, from: pa).isEmpty)
        #expect(fixture.send(ethernetFrame(from: Self.a, to: d), from: pa, offload: FrameOffload(vlan: VLANInfo(priority: 0, vlanID: 7))).isEmpty)
        #expect(fixture.core.counters(of: pa)?.dropped(.vlanTagged) == 3)
        #expect(fixture.queued() == [0, 0, 0], "nothing left the guest's port into a VLAN")
        // Untagged frames still go.
        _ = fixture.send(ethernetFrame(from: Self.a, to: d), from: pa)
        #expect(fixture.queued() == [1, 0, 0])

        // From the host: a tagged frame for a child is not delivered; an untagged one is.
        _ = fixture.send(ethernetFrame(from: d, to: Self.b, etherType: 0x8100), from: fixture.host)
        #expect(fixture.core.counters(of: pb)?.dropped(.vlanTagged) == 1 && fixture.queued() == [1, 0, 0])
        _ = fixture.send(ethernetFrame(from: d, to: Self.b), from: fixture.host)
        #expect(fixture.queued() == [1, 0, 1])

        // A trunk port carries tags both ways: the guest's tag reaches the host in line.
        var trunk = SwitchPortConfiguration(name: "trunk", kind: .child, macAddress: Self.c)
        trunk.packetFilter = .linuxDefault
        trunk.allowsVLANTags = true
        let pc = fixture.core.addPort(trunk)
        _ = fixture.send(ethernetFrame(from: Self.c, to: d), from: pc, offload: FrameOffload(vlan: VLANInfo(priority: 0, vlanID: 7)))
        let toHost = fixture.core.dequeue(fixture.host).last?.bytes ?? []
        #expect(toHost.count >= 16 && toHost[12] == 0x81 && toHost[13] == 0x00 && toHost[15] == 7, "the tag in line for the TAP")
        _ = fixture.send(ethernetFrame(from: d, to: Self.c, etherType: 0x8100), from: fixture.host)
        #expect(fixture.core.queuedFrames(for: pc) == 1 && fixture.core.counters(of: pc)?.dropped(.vlanTagged) == 0)

        // Nor does a tagged frame hold its sender where it would be dropped: a's share of b's
        // queue full, a's untagged frame is held, its tagged one (dropped at a's port) is not,
        // and neither is the trunk port's tagged frame for untagged b.
        _ = fixture.core.dequeue(pb)
        for _ in 0..<2048 { _ = fixture.send(ethernetFrame(from: Self.a, to: Self.b), from: pa) }
        for _ in 0..<2048 { _ = fixture.send(ethernetFrame(from: Self.c, to: Self.b), from: pc) }
        #expect(fixture.core.holdingPort(for: NetworkFrame(bytes: ethernetFrame(from: Self.a, to: Self.b)), from: pa, now: 1) == pb)
        #expect(fixture.core.holdingPort(for: NetworkFrame(bytes: ethernetFrame(from: Self.a, to: Self.b, etherType: 0x9100)),
                                         from: pa, now: 1) == nil)
        #expect(fixture.core.holdingPort(for: NetworkFrame(bytes: ethernetFrame(from: Self.c, to: Self.b)), from: pc, now: 1) == pb)
        #expect(fixture.core.holdingPort(for: NetworkFrame(bytes: ethernetFrame(from: Self.c, to: Self.b),
                                                           offload: FrameOffload(vlan: VLANInfo(priority: 0, vlanID: 7))),
                                         from: pc, now: 1) == nil)
    }

    @Test("broadcast reaches every other port whose filter has BROADCAST; multicast needs ALL_MULTICAST or the list")
    func flooding() {
        var fixture = Fixture()
        _ = fixture.send(ethernetFrame(from: Self.a, to: .broadcast), from: fixture.ports[0])
        #expect(fixture.queued() == [1, 0, 1, 1])
        fixture.core.setPacketFilter([.directed, .multicast], for: fixture.ports[2])
        _ = fixture.send(ethernetFrame(from: Self.a, to: Self.multicast), from: fixture.ports[0])
        #expect(fixture.queued() == [2, 0, 2, 1], "c has MULTICAST without this group")
        fixture.core.setMulticastAddresses([Self.multicast], for: fixture.ports[2])
        _ = fixture.send(ethernetFrame(from: Self.a, to: Self.multicast), from: fixture.ports[0])
        #expect(fixture.queued() == [3, 0, 3, 2])
    }

    @Test("a flooded frame reaches every other port whole, in port order, and a filter drops it at the last port too")
    func floodedFramesAreWhole() {
        var fixture = Fixture()
        let frames = (0..<3).map { ethernetFrame(from: Self.a, to: .broadcast, count: 60 + $0, fill: UInt8($0)) }
        // Delivered in port order: the host first, the last child last.
        #expect(fixture.send(frames[0], from: fixture.ports[0]) == [fixture.host, fixture.ports[1], fixture.ports[2]])
        for frame in frames.dropFirst() { _ = fixture.send(frame, from: fixture.ports[0]) }
        // Every port but the sender's gets every frame, in the order sent, byte for byte (the
        // last one the sender's own frame, the others copies).
        for port in [fixture.host, fixture.ports[1], fixture.ports[2]] {
            #expect(fixture.core.dequeue(port).map(\.bytes) == frames)
        }
        // A unicast frame to an unknown address floods too: the host port takes it, and the
        // children's filters (their own address only) drop it, the last one's included.
        let unknown = ethernetFrame(from: Self.a, to: MACAddress(0x00, 0x15, 0x5D, 0, 0, 0x0F))
        _ = fixture.send(unknown, from: fixture.ports[0])
        #expect(fixture.core.dequeue(fixture.host).map(\.bytes) == [unknown])
        #expect(fixture.queued() == [0, 0, 0, 0])
        #expect(fixture.core.counters(of: fixture.ports[1])?.dropped(.filtered) == 1)
        #expect(fixture.core.counters(of: fixture.ports[2])?.dropped(.filtered) == 1)
    }

    @Test("a flooded frame asking for a checksum: the TAP takes the request, each guest a completed frame, the last one too")
    func floodedOffloadReachesEveryKindOfPort() {
        var fixture = Fixture()
        var broadcast = PacketBuilder.ipv4UDP(payload: 50)
        broadcast.replaceSubrange(0..<12, with: MACAddress.broadcast.bytes + Self.a.bytes)
        _ = fixture.send(broadcast, from: fixture.ports[0], offload: FrameOffload(
            checksum: .init(transport: .udp, transportOffset: 34, isIPv6: false)))
        let toHost = fixture.core.dequeue(fixture.host)
        #expect(toHost.count == 1 && toHost.first?.offload.checksum != nil, "the TAP completes it itself")
        for port in [fixture.ports[1], fixture.ports[2]] {
            let frames = fixture.core.dequeue(port)
            #expect(frames.count == 1 && frames.allSatisfy { PacketBuilder.checksumsValid($0.bytes) && $0.offload.checksum == nil })
        }
    }

    @Test("packet filter 0 delivers nothing; PROMISCUOUS delivers flooded frames for others too")
    func filters() {
        var fixture = Fixture(filter: [])
        _ = fixture.send(ethernetFrame(from: Self.a, to: .broadcast), from: fixture.ports[0])
        _ = fixture.send(ethernetFrame(from: Self.a, to: Self.unknown), from: fixture.ports[0])
        _ = fixture.send(ethernetFrame(from: Self.a, to: Self.b), from: fixture.ports[0])
        #expect(fixture.queued() == [2, 0, 0, 0])
        fixture.core.setPacketFilter([.promiscuous], for: fixture.ports[2])
        _ = fixture.send(ethernetFrame(from: Self.a, to: Self.unknown), from: fixture.ports[0])
        // A frame for a port that owns its address is that port's alone, as on Hyper-V's switch.
        _ = fixture.send(ethernetFrame(from: Self.a, to: Self.b), from: fixture.ports[0])
        #expect(fixture.queued() == [3, 0, 0, 1])
    }

    @Test("counters: frames and bytes in and out per port, drops by reason")
    func counters() {
        var fixture = Fixture()
        let frame = ethernetFrame(from: Self.a, to: .broadcast, count: 100)
        _ = fixture.send(frame, from: fixture.ports[0])
        _ = fixture.send([1, 2, 3], from: fixture.ports[0])
        _ = fixture.send(ethernetFrame(from: Self.a, to: Self.b, count: 1600), from: fixture.ports[0])
        _ = fixture.send(ethernetFrame(from: Self.c, to: Self.b), from: fixture.ports[0])
        _ = fixture.send(ethernetFrame(from: Self.multicast, to: Self.b), from: fixture.ports[0])
        let sender = fixture.core.counters(of: fixture.ports[0])
        #expect(sender?.framesIn == 5)
        #expect(sender?.bytesIn == UInt64(100 + 3 + 1600 + 60 + 60))
        #expect(sender?.dropped(.malformed) == 2)
        #expect(sender?.dropped(.oversized) == 1)
        #expect(sender?.dropped(.spoofedSource) == 1)
        let receiver = fixture.core.counters(of: fixture.ports[1])
        #expect(receiver?.framesOut == 1 && receiver?.bytesOut == 100)
    }

    @Test("one flooding port fills at most half of each victim's bounded queue; other ports keep flowing")
    func boundedQueues() {
        var core = SwitchCore(name: "private", kind: .private)
        var slow = SwitchPortConfiguration(name: "slow", kind: .child, macAddress: Self.b)
        slow.packetFilter = .linuxDefault
        slow.queueFrameLimit = 8
        let slowPort = core.addPort(slow)
        var fast = SwitchPortConfiguration(name: "fast", kind: .child, macAddress: Self.c)
        fast.packetFilter = .linuxDefault
        let fastPort = core.addPort(fast)
        var flooder = SwitchPortConfiguration(name: "flooder", kind: .child, macAddress: Self.a)
        flooder.packetFilter = .linuxDefault
        let flooderPort = core.addPort(flooder)
        for _ in 0..<100 { _ = core.forward(NetworkFrame(bytes: ethernetFrame(from: Self.a, to: .broadcast)), from: flooderPort, now: 1) }
        #expect(core.queuedFrames(for: slowPort) == 4, "one sender takes at most half of the queue")
        #expect(core.counters(of: slowPort)?.dropped(.queueFull) == 96)
        #expect(core.counters(of: slowPort)?.drops == [.queueFull: 96], "only reasons that dropped a frame")
        // Another sender's frame for the flooded port still finds room.
        _ = core.forward(NetworkFrame(bytes: ethernetFrame(from: Self.c, to: Self.b)), from: fastPort, now: 1)
        #expect(core.queuedFrames(for: slowPort) == 5)
        // The fast port drains and still receives a directed frame from the slow port's owner.
        _ = core.dequeue(fastPort)
        _ = core.forward(NetworkFrame(bytes: ethernetFrame(from: Self.b, to: Self.c)), from: slowPort, now: 2)
        #expect(core.dequeue(fastPort).count == 1)
        #expect(core.counters(of: fastPort)?.dropped(.queueFull) == 0)
    }

    /// Child ports that take every frame and may send from any address.
    /// Ports for a and b (Linux's default filter) on a thread-safe switch, and b's eventfd.
    static func addPortsAB(to virtualSwitch: VirtualSwitch) throws -> (SwitchPortID, SwitchPortID, EventFD) {
        var first = SwitchPortConfiguration(name: "a", kind: .child, macAddress: a)
        first.packetFilter = .linuxDefault
        var second = SwitchPortConfiguration(name: "b", kind: .child, macAddress: b)
        second.packetFilter = .linuxDefault
        let (portA, _) = try virtualSwitch.addPort(first)
        let (portB, readyB) = try virtualSwitch.addPort(second)
        return (portA, portB, readyB)
    }

    static func promiscuousPorts(_ count: Int, on core: inout SwitchCore) -> [SwitchPortID] {
        (0..<count).map { index in
            var configuration = SwitchPortConfiguration(name: "p\(index)", kind: .child)
            configuration.allowsMACSpoofing = true
            configuration.packetFilter = [.promiscuous]
            return core.addPort(configuration)
        }
    }

    @Test("a known address seen again is refreshed, and one that moved is learned on its new port")
    func relearning() {
        var core = SwitchCore(name: "private", kind: .private, tableCapacity: 4, agingNanoseconds: 1000)
        let ports = Self.promiscuousPorts(2, on: &core)
        let frame = NetworkFrame(bytes: ethernetFrame(from: Self.a, to: .broadcast))
        _ = core.forward(frame, from: ports[0], now: 100)
        _ = core.forward(frame, from: ports[0], now: 900)
        #expect(core.learnedPort(of: Self.a, now: 1500) == ports[0], "aging counts from the last frame")
        _ = core.forward(frame, from: ports[1], now: 1600)
        #expect(core.learnedPort(of: Self.a, now: 1600) == ports[1], "the station moved")
        #expect(core.learnedCount == 1)
    }

    /// The table remembers the entry it last learned or looked up, so that a stream of frames
    /// between two ports hashes nothing; none of what the table answers may change because of it.
    @Test("a stream's addresses are remembered without changing what is learned: moves, aging, refresh and forgetting")
    func rememberedEntries() {
        let aging: UInt64 = 256_000
        var core = SwitchCore(name: "private", kind: .private, tableCapacity: 4, agingNanoseconds: aging)
        let ports = Self.promiscuousPorts(3, on: &core)
        let aToB = NetworkFrame(bytes: ethernetFrame(from: Self.a, to: Self.b))
        let bToA = NetworkFrame(bytes: ethernetFrame(from: Self.b, to: Self.a))
        _ = core.forward(bToA, from: ports[1], now: 0)
        // a → b, again and again: b is known, so only its port gets the frames.
        for now in stride(from: UInt64(10), to: 2000, by: 10) {
            #expect(core.forward(aToB, from: ports[0], now: now).allSatisfy { $0 == ports[1] })
        }
        #expect(core.learnedPort(of: Self.a, now: 2000) == ports[0])
        // Refreshed often enough: a is still known just under the aging time after its last frame.
        _ = core.forward(aToB, from: ports[0], now: 100_000)
        #expect(core.learnedPort(of: Self.a, now: 100_000 + aging - aging / 256) == ports[0])
        // b ages out although it is the destination just looked up.
        #expect(core.learnedPort(of: Self.b, now: aging + 1) == nil)
        // a moves to port 2 within the refresh time: learned there at once.
        _ = core.forward(aToB, from: ports[2], now: 100_001)
        #expect(core.learnedPort(of: Self.a, now: 100_001) == ports[2])
        // So does b, the destination just looked up: frames to it follow it to port 0.
        _ = core.forward(bToA, from: ports[0], now: 100_001)
        _ = core.dequeue(ports[1])
        #expect(core.forward(aToB, from: ports[2], now: 100_001).allSatisfy { $0 == ports[0] })
        #expect(core.queuedFrames(for: ports[1]) == 0 && core.learnedPort(of: Self.b, now: 100_001) == ports[0])
        // Forgetting port 2 drops a, remembered or not: a frame to it floods.
        core.removePort(ports[2])
        #expect(core.learnedPort(of: Self.a, now: 100_002) == nil)
        _ = core.dequeue(ports[0])
        _ = core.forward(bToA, from: ports[1], now: 100_003)
        #expect(core.queuedFrames(for: ports[0]) > 0, "unknown again, so flooded to port 0")
    }

    /// The remembered destination must follow what the table learns and evicts between lookups.
    @Test("a remembered destination that moves or is evicted is not used any more")
    func rememberedDestination() {
        let aToB = NetworkFrame(bytes: ethernetFrame(from: Self.a, to: Self.b))
        func broadcast(from address: MACAddress) -> NetworkFrame {
            NetworkFrame(bytes: ethernetFrame(from: address, to: .broadcast))
        }
        // Moves: b, remembered as a→b's destination, moves with a frame that looks nothing up.
        var core = SwitchCore(name: "private", kind: .private, tableCapacity: 8, agingNanoseconds: 256_000)
        var ports = Self.promiscuousPorts(3, on: &core)
        _ = core.forward(broadcast(from: Self.b), from: ports[1], now: 0)
        #expect(core.forward(aToB, from: ports[0], now: 1).allSatisfy { $0 == ports[1] })
        _ = core.forward(broadcast(from: Self.b), from: ports[2], now: 2)
        _ = core.forward(broadcast(from: Self.c), from: ports[0], now: 3)
        for port in ports { _ = core.dequeue(port) }
        _ = core.forward(aToB, from: ports[0], now: 4)
        #expect(core.queuedFrames(for: ports[2]) == 1 && core.queuedFrames(for: ports[1]) == 0, "b moved to port 2")

        // Eviction: in a two-entry table, b (remembered) is the oldest when c is learned.
        core = SwitchCore(name: "private", kind: .private, tableCapacity: 2, agingNanoseconds: 256_000)
        ports = Self.promiscuousPorts(3, on: &core)
        _ = core.forward(broadcast(from: Self.b), from: ports[1], now: 0)
        #expect(core.forward(aToB, from: ports[0], now: 1).allSatisfy { $0 == ports[1] })
        _ = core.forward(broadcast(from: Self.c), from: ports[2], now: 2)
        #expect(core.learnedPort(of: Self.b, now: 3) == nil, "evicted")
        for port in ports { _ = core.dequeue(port) }
        _ = core.forward(aToB, from: ports[0], now: 3)
        #expect(core.queuedFrames(for: ports[1]) == 1 && core.queuedFrames(for: ports[2]) == 1, "b unknown: flooded")

        // A miss: b, looked up (and remembered as missing) before any port announced it, is
        // found once it does.
        core = SwitchCore(name: "private", kind: .private, tableCapacity: 8, agingNanoseconds: 256_000)
        ports = Self.promiscuousPorts(3, on: &core)
        #expect(core.forward(aToB, from: ports[0], now: 0).count == 2, "b unknown: flooded")
        #expect(core.forward(aToB, from: ports[0], now: 1).isEmpty, "still unknown: flooded to queues already waking")
        #expect(core.learnedPort(of: Self.b, now: 1) == nil)
        _ = core.forward(broadcast(from: Self.b), from: ports[2], now: 2)
        for port in ports { _ = core.dequeue(port) }
        _ = core.forward(aToB, from: ports[0], now: 3)
        #expect(core.queuedFrames(for: ports[2]) == 1 && core.queuedFrames(for: ports[1]) == 0, "b found on port 2")
    }

    @Test("send(draining:) switches the frames in order, wakes the destination and empties the sender's array")
    func sendDraining() throws {
        let virtualSwitch = VirtualSwitch(name: "d", kind: .private)
        let (portA, portB, readyB) = try Self.addPortsAB(to: virtualSwitch)
        // More frames than one hold of the lock switches, each distinct.
        func frame(_ index: Int) -> NetworkFrame {
            NetworkFrame(bytes: ethernetFrame(from: Self.a, to: Self.b) + [UInt8(index & 0xFF), UInt8(index >> 8)])
        }
        var frames = (0..<150).map(frame)
        let capacity = frames.capacity
        virtualSwitch.send(draining: &frames, from: portA)
        #expect(frames.isEmpty && frames.capacity >= capacity)
        #expect(readyB.consume() != nil)
        #expect(virtualSwitch.receive(for: portB, limit: 200) == (0..<150).map(frame))
        #expect(virtualSwitch.receive(for: portA).isEmpty)
    }

    @Test("a direct sink gets a run of frames in one call; what it leaves is queued for the port's owner, in order, and later frames queue behind it")
    func directSinkTakesAPrefix() throws {
        let virtualSwitch = VirtualSwitch(name: "d", kind: .private)
        let (portA, portB, readyB) = try Self.addPortsAB(to: virtualSwitch)
        func frame(_ index: Int) -> NetworkFrame {
            NetworkFrame(bytes: ethernetFrame(from: Self.a, to: Self.b) + [UInt8(index)])
        }
        let runs = Mutex<[[NetworkFrame]]>([])
        virtualSwitch.setDirectSink({ frames in
            runs.withLock { $0.append(Array(frames)) }
            return 3
        }, for: portB)
        virtualSwitch.send((0..<5).map(frame), from: portA)
        #expect(runs.withLock { $0 } == [(0..<5).map(frame)])
        #expect(readyB.consume() != nil)
        // Frames 3 and 4 wait for the owner; frame 5 may not overtake them through the sink.
        virtualSwitch.send([frame(5)], from: portA)
        #expect(runs.withLock { $0.count } == 1)
        #expect(virtualSwitch.receive(for: portB) == (3..<6).map(frame))
    }

    @Test("a sender learns whether its frames left the switch at once: all written by a sink (or filtered) yes; any left in a port's queue, or no sink at all, no")
    func sendSaysWhetherFramesLeftAtOnce() throws {
        func frame(_ index: Int) -> NetworkFrame {
            NetworkFrame(bytes: ethernetFrame(from: Self.a, to: Self.b) + [UInt8(index)])
        }
        // No direct sink: everything waits in the receiving port's queue.
        let queued = VirtualSwitch(name: "q", kind: .private)
        let (queuedA, queuedB, _) = try Self.addPortsAB(to: queued)
        var frames = (0..<5).map(frame)
        #expect(queued.send(draining: &frames, from: queuedA) == false)
        #expect(queued.receive(for: queuedB) == (0..<5).map(frame))

        let virtualSwitch = VirtualSwitch(name: "l", kind: .private)
        let (portA, portB, _) = try Self.addPortsAB(to: virtualSwitch)
        let takes = Mutex(Int.max)
        virtualSwitch.setDirectSink({ frames in min(frames.count, takes.withLock { $0 }) }, for: portB)
        // The sink takes every frame.
        frames = (0..<5).map(frame)
        #expect(virtualSwitch.send(draining: &frames, from: portA) == true)
        #expect(virtualSwitch.receive(for: portB).isEmpty)
        // It takes three of five: two wait for the port's owner.
        takes.withLock { $0 = 3 }
        frames = (5..<10).map(frame)
        #expect(virtualSwitch.send(draining: &frames, from: portA) == false)
        // With frames waiting, the next ones queue behind them, although the sink would take them.
        takes.withLock { $0 = .max }
        frames = [frame(10)]
        #expect(virtualSwitch.send(draining: &frames, from: portA) == false)
        #expect(virtualSwitch.receive(for: portB) == [frame(8), frame(9), frame(10)])
        // Queue drained, but its owner is still writing what it took: a frame written now could
        // reach the endpoint before them, so it queues too.
        frames = [frame(11)]
        #expect(virtualSwitch.send(draining: &frames, from: portA) == false)
        #expect(virtualSwitch.receive(for: portB) == [frame(11)])
        // Written: straight out again.
        virtualSwitch.finishedWriting(for: portB)
        frames = [frame(99)]
        #expect(virtualSwitch.send(draining: &frames, from: portA) == true)
        // A third port, a guest's with no sink: a frame for it is queued, so not all left; a
        // frame every port's filter turns away went nowhere, which does not hold the sender back.
        var third = SwitchPortConfiguration(name: "c", kind: .child, macAddress: Self.c)
        third.packetFilter = .linuxDefault
        let (portC, _) = try virtualSwitch.addPort(third)
        frames = [NetworkFrame(bytes: ethernetFrame(from: Self.a, to: Self.c) + [12])]
        #expect(virtualSwitch.send(draining: &frames, from: portA) == false)
        #expect(virtualSwitch.receive(for: portC).count == 1)
        let unknown = MACAddress(0x00, 0x15, 0x5D, 0, 0, 0x77)
        frames = [NetworkFrame(bytes: ethernetFrame(from: Self.a, to: unknown) + [13])]
        #expect(virtualSwitch.send(draining: &frames, from: portA) == true)
        frames = [frame(14), NetworkFrame(bytes: ethernetFrame(from: Self.a, to: Self.c) + [15])]
        #expect(virtualSwitch.send(draining: &frames, from: portA) == false)
        #expect(virtualSwitch.receive(for: portC).count == 1)
        #expect(virtualSwitch.receive(for: portB).isEmpty)
    }

    @Test("a batched write takes frames up to the last one written: would-blocks before it are dropped, failures after it too, trailing would-blocks are left")
    func batchedWriteTakesAnOrderedPrefix() {
        let w = FrameWriteRing.Outcome.written, b = FrameWriteRing.Outcome.wouldBlock, f = FrameWriteRing.Outcome.failed(EIO)
        #expect(HostPortWriter.taken([w, w, w]) == (3, 0, 0))
        #expect(HostPortWriter.taken([b, b]) == (0, 0, 0))
        #expect(HostPortWriter.taken([w, b, w, b, b]) == (3, 1, 0))
        #expect(HostPortWriter.taken([f, w, f, b, f]) == (3, 0, 2))
        #expect(HostPortWriter.taken([f, f]) == (2, 0, 2))
        #expect(HostPortWriter.taken([]) == (0, 0, 0))
    }

    @Test("drop reasons' raw values run 0..<allCases.count (the counters index by them)")
    func dropReasonIndices() {
        #expect(SwitchDropReason.allCases.map(\.rawValue) == Array(0..<SwitchDropReason.allCases.count))
    }

    @Test("ports added and removed in any order are each found by their ID, and only they")
    func portTable() {
        var core = SwitchCore(name: "private", kind: .private)
        let ids = (0..<9).map { core.addPort(SwitchPortConfiguration(name: "p\($0)", kind: .child)) }
        for index in [4, 0, 8, 5] { core.removePort(ids[index]) }
        core.removePort(ids[4])
        core.removePort(SwitchPortID(10_000))
        let kept = [1, 2, 3, 6, 7]
        #expect(core.portIDs == kept.map { ids[$0] })
        for (index, id) in ids.enumerated() {
            #expect(core.configuration(of: id)?.name == (kept.contains(index) ? "p\(index)" : nil))
        }
        let added = core.addPort(SwitchPortConfiguration(name: "late", kind: .child))
        #expect(core.portIDs.last == added && core.configuration(of: added)?.name == "late")
        core.setPacketFilter([.promiscuous], for: ids[6])
        #expect(core.configuration(of: ids[6])?.packetFilter == [.promiscuous])
        #expect(core.configuration(of: ids[7])?.packetFilter != [.promiscuous])
    }

    @Test("an owned address passes to the next port that owns it (a NIC added again before the old one left), and what another port taught the table before is forgotten")
    func ownedAddressesPassOnAndStaleEntriesGo() {
        var fixture = Fixture(children: [Self.a])
        let d = MACAddress(0x00, 0x15, 0x5D, 0, 0, 0x0D)
        // d is first heard from behind the host port, then a child that owns it is added.
        _ = fixture.send(ethernetFrame(from: d, to: .broadcast), from: fixture.host)
        #expect(fixture.core.learnedPort(of: d, now: 1) == fixture.host)
        var owner = SwitchPortConfiguration(name: "old", kind: .child, macAddress: d)
        owner.packetFilter = .linuxDefault
        let old = fixture.core.addPort(owner)
        #expect(fixture.core.learnedPort(of: d, now: 1) == nil, "forgotten")
        _ = fixture.send(ethernetFrame(from: Self.a, to: d), from: fixture.ports[0])
        #expect(fixture.core.queuedFrames(for: old) == 1 && fixture.core.queuedFrames(for: fixture.host) == 0)
        // Its replacement comes while it is still there; once it goes, the address is the new one's.
        owner.name = "new"
        let new = fixture.core.addPort(owner)
        fixture.core.removePort(old)
        _ = fixture.send(ethernetFrame(from: Self.a, to: d), from: fixture.ports[0])
        #expect(fixture.core.queuedFrames(for: new) == 1 && fixture.core.queuedFrames(for: fixture.host) == 0)
        _ = fixture.send(ethernetFrame(from: d, to: Self.a), from: fixture.host)
        #expect(fixture.core.counters(of: fixture.host)?.dropped(.spoofedSource) == 1)
    }

    @Test("learned entries age out, and the table is bounded (oldest evicted)")
    func agingAndBound() {
        var core = SwitchCore(name: "private", kind: .private, tableCapacity: 4, agingNanoseconds: 1000)
        let ports = Self.promiscuousPorts(3, on: &core)
        _ = core.forward(NetworkFrame(bytes: ethernetFrame(from: Self.a, to: .broadcast)), from: ports[0], now: 100)
        #expect(core.learnedPort(of: Self.a, now: 1000) == ports[0])
        #expect(core.learnedPort(of: Self.a, now: 1101) == nil, "aged out")
        for index in 0..<10 {
            _ = core.forward(NetworkFrame(bytes: ethernetFrame(from: MACAddress(rawValue: 0x0200_0000_0000 + UInt64(index)),
                                                               to: .broadcast)), from: ports[1], now: 200 + UInt64(index))
        }
        #expect(core.learnedCount == 4)
        #expect(core.learnedPort(of: MACAddress(rawValue: 0x0200_0000_0009), now: 300) == ports[1])
        #expect(core.learnedPort(of: MACAddress(rawValue: 0x0200_0000_0000), now: 300) == nil, "evicted")
        // A larger table evicts its oldest eighth at once when full: never more than it holds,
        // the newest kept, the oldest gone.
        var large = SwitchCore(name: "private", kind: .private, tableCapacity: 64, agingNanoseconds: 1_000_000)
        let sender = Self.promiscuousPorts(2, on: &large)[0]
        for index in 0..<1000 {
            _ = large.forward(NetworkFrame(bytes: ethernetFrame(from: MACAddress(rawValue: 0x0200_0000_0000 + UInt64(index)),
                                                                to: .broadcast)), from: sender, now: 200 + UInt64(index))
            #expect(large.learnedCount <= 64)
        }
        #expect(large.learnedCount > 64 - 64 / 8)
        #expect(large.learnedPort(of: MACAddress(rawValue: 0x0200_0000_0000 + 999), now: 1200) == sender)
        #expect(large.learnedPort(of: MACAddress(rawValue: 0x0200_0000_0000 + 900), now: 1200) == nil)
        // Removing a port forgets what was learned on it.
        core.removePort(ports[1])
        #expect(core.learnedCount == 0)
    }

    @Test("child to child: an LSO frame reaches a guest as valid segments, a checksum request as a completed frame")
    func offloadBetweenChildren() {
        var fixture = Fixture()
        // Flooded, to the host and to b, which listens to everything.
        fixture.core.setPacketFilter([.promiscuous], for: fixture.ports[1])
        let lso = PacketBuilder.ipv4TCP(payload: 3000, lsoStyle: true, from: Self.a, to: Self.unknown)
        _ = fixture.send(lso, from: fixture.ports[0], offload: FrameOffload(
            segmentation: .init(maximumSegmentSize: 1448, transportOffset: 34, isIPv6: false)))
        let toB = fixture.core.dequeue(fixture.ports[1])
        #expect(toB.count == 3 && toB.allSatisfy { PacketBuilder.checksumsValid($0.bytes) && $0.bytes.count <= 1514 })
        let toHost = fixture.core.dequeue(fixture.host)
        #expect(toHost.count == 1 && toHost.first?.offload.segmentation != nil, "the TAP takes it whole")
        let udp = PacketBuilder.ipv4UDP(payload: 50)
        var sourced = udp
        sourced.replaceSubrange(0..<12, with: Self.b.bytes + Self.a.bytes)
        _ = fixture.send(sourced, from: fixture.ports[0], offload: FrameOffload(
            checksum: .init(transport: .udp, transportOffset: 34, isIPv6: false)))
        let completed = fixture.core.dequeue(fixture.ports[1])
        #expect(completed.count == 1 && PacketBuilder.checksumsValid(completed[0].bytes))
        // Frames a guest cannot be given whole are dropped and counted, not passed on broken.
        _ = fixture.send(ethernetFrame(from: Self.a, to: Self.b, count: 3000), from: fixture.ports[0], offload: FrameOffload(
            segmentation: .init(maximumSegmentSize: 1448, transportOffset: 34, isIPv6: false)))
        #expect(fixture.core.counters(of: fixture.ports[1])?.dropped(.offloadFailed) == 1)
    }

    @Test("a child whose receive buffer is full gets its frames back in order")
    func requeue() {
        var fixture = Fixture()
        for index in 0..<4 {
            _ = fixture.send(ethernetFrame(from: Self.a, to: Self.b, fill: UInt8(index)), from: fixture.ports[0])
        }
        let taken = fixture.core.dequeue(fixture.ports[1], limit: 3)
        fixture.core.requeue(Array(taken.dropFirst()), for: fixture.ports[1])
        #expect(fixture.core.dequeue(fixture.ports[1]).map { $0.bytes[20] } == [1, 2, 3])
    }

    @Test("a port's queue keeps order as it wraps around and grows, with frames given back at its head, against a list model")
    func queueOrderAgainstModel() {
        var fixture = Fixture()
        let (sender, receiver) = (fixture.ports[0], fixture.ports[1])
        _ = fixture.send(ethernetFrame(from: Self.b, to: Self.a), from: receiver)
        _ = fixture.core.dequeue(sender)
        var model: [UInt16] = []
        var next: UInt16 = 0
        var random: UInt64 = 0x9E37_79B9_7F4A_7C15
        func draw(_ bound: Int) -> Int {
            random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((random >> 33) % UInt64(bound))
        }
        func stamp(_ frame: NetworkFrame) -> UInt16 { UInt16(frame.bytes[14]) << 8 | UInt16(frame.bytes[15]) }
        for _ in 0..<2_000 {
            // Never more than one sender's share (half the queue) waits, so nothing is dropped.
            for _ in 0..<min(draw(40), 500 - model.count) {
                var bytes = ethernetFrame(from: Self.a, to: Self.b)
                bytes[14] = UInt8(next >> 8)
                bytes[15] = UInt8(next & 0xFF)
                _ = fixture.send(bytes, from: sender)
                model.append(next)
                next &+= 1
            }
            let taken = fixture.core.dequeue(receiver, limit: draw(70))
            #expect(taken.map(stamp) == Array(model.prefix(taken.count)))
            model.removeFirst(taken.count)
            let givenBack = draw(taken.count + 1)
            fixture.core.requeue(Array(taken.suffix(givenBack)), for: receiver)
            model.insert(contentsOf: taken.suffix(givenBack).map(stamp), at: 0)
            #expect(fixture.core.queuedFrames(for: receiver) == model.count)
        }
        #expect(fixture.core.dequeue(receiver).map(stamp) == model)
        #expect(fixture.core.counters(of: receiver)?.dropped(.queueFull) == 0)
    }

    @Test("the thread-safe switch signals a port's eventfd when its queue becomes non-empty")
    func notification() throws {
        let virtualSwitch = VirtualSwitch(name: "Default Switch", kind: .private)
        let (portA, portB, readyB) = try Self.addPortsAB(to: virtualSwitch)
        #expect(readyB.consume() == nil)
        virtualSwitch.send([NetworkFrame(bytes: ethernetFrame(from: Self.a, to: Self.b))], from: portA)
        #expect(readyB.consume() == 1)
        #expect(virtualSwitch.receive(for: portB).count == 1)
        #expect(virtualSwitch.counters(of: portA)?.framesIn == 1)
    }
}
