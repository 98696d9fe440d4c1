import Glibc
import LinuxSupport
import NetworkProtocol
import NetworkVSC
import Synchronization
import SystemPackage
import Testing
import VirtualSwitch

/// A real TAP device in a network namespace the test creates: frames the switch writes appear
/// on the host side of the interface (an AF_PACKET socket there reads them) and frames sent on
/// the interface reach a child port. Skipped, with the reason, where /dev/net/tun or the
/// privileges to create namespaces and TAPs are missing.
@Suite struct TAPPortTests {
    /// Descriptors created inside a fresh network namespace (they keep it alive).
    struct Namespace: Sendable {
        var tap: OwnedDescriptor
        var interface: String
        /// A plain AF_PACKET socket on the TAP interface: the "host side".
        var hostSide: OwnedDescriptor
        /// With `external`: a second TAP joined to the interface as the root joins an external
        /// switch's (`UplinkMirror`), as the parent's endpoint.
        var uplink: VirtioFrameEndpoint?
    }

    /// Creates the namespace on a thread of its own, so the test's thread stays where it was.
    /// - Parameter address: an IPv4 address (host byte order, /24) for the TAP, so that the
    ///   namespace's stack answers ARP and pings on it.
    static func makeNamespace(address: UInt32? = nil, external: Bool = false) throws(SystemError) -> Namespace {
        let result = Mutex<Result<Namespace, SystemError>?>(nil)
        let thread = try OSThread.spawn(name: "netns") {
            do throws(SystemError) {
                try NetworkNamespace.unshareCurrentThread()
                let (tap, interface) = try TAPDevice.create(name: "hvtest0")
                let control = try NetworkInterface.controlSocket()
                if let address { try NetworkInterface.setIPv4Address(interface, address, prefix: 24, using: control) }
                // Up first: a packet socket bound to a down interface reports ENETDOWN once.
                try NetworkInterface.setUp(interface, true, using: control)
                let hostSide = try PacketSocket.open(interface: interface, promiscuous: true, virtioHeader: false)
                var uplink: VirtioFrameEndpoint?
                if external {
                    let (switchTAP, name) = try TAPDevice.create(name: "hvx%d")
                    _ = UplinkMirror.silenceHostStack(on: name)
                    try NetworkInterface.setUp(name, true, using: control)
                    _ = try UplinkMirror.attach(tap: name, uplink: interface)
                    uplink = try VirtioFrameEndpoint.tap(switchTAP)
                }
                result.withLock { $0 = .success(Namespace(tap: tap, interface: interface, hostSide: hostSide, uplink: uplink)) }
            } catch {
                result.withLock { $0 = .failure(error) }
            }
        }
        thread.join()
        switch result.withLock({ $0 }) {
        case .success(let namespace)?: return namespace
        case .failure(let error)?: throw error
        case nil: throw SystemError("create test namespace", errno: .ioError)
        }
    }

    /// Why the TAP tests cannot run here, or nil.
    static let unavailableReason: String? = {
        guard access("/dev/net/tun", R_OK | W_OK) == 0 else { return "/dev/net/tun is missing or not accessible" }
        do throws(SystemError) {
            _ = try makeNamespace()
            return nil
        } catch {
            return "cannot create a network namespace with a TAP (CAP_NET_ADMIN/CAP_SYS_ADMIN?): \(error)"
        }
    }()

    static let child = MACAddress(0x00, 0x15, 0x5D, 0x00, 0x00, 0x42)
    static let hostPeer = MACAddress(0x02, 0x00, 0x00, 0x00, 0x00, 0x99)
    static let testEtherType: UInt16 = 0x88B5

    /// Reads frames from `descriptor` until one carries the test EtherType, with a deadline.
    static func readTestFrame(_ descriptor: OwnedDescriptor, headerSize: Int = 0) throws -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 70_000)
        let deadline = MonotonicClock.nanoseconds() + 5_000_000_000
        while MonotonicClock.nanoseconds() < deadline {
            _ = try Poll.wait(on: [descriptor.rawValue], timeoutMilliseconds: 200)
            while let count = try FrameIO.read(descriptor, into: &buffer) {
                let frame = Array(buffer[headerSize..<count])
                if frame.count >= 14, UInt16(frame[12]) << 8 | UInt16(frame[13]) == testEtherType
                    || (frame.count >= 14 && frame[12] == 0x08 && frame[13] == 0x00 && MACAddress.source(of: frame) == child) {
                    return Array(buffer[0..<count])
                }
            }
        }
        return nil
    }

    /// An internal switch on the namespace's TAP: a child port (Linux's default filter) and the
    /// host port with its pump.
    static func internalSwitch(on namespace: Namespace) throws
        -> (virtualSwitch: VirtualSwitch, childPort: SwitchPortID, childReady: EventFD, hostPort: SwitchPortID,
            endpoint: VirtioFrameEndpoint, pump: HostPortPump)
    {
        let virtualSwitch = VirtualSwitch(name: "Internal", kind: .internal(hostInterface: namespace.interface))
        var childConfiguration = SwitchPortConfiguration(name: "child", kind: .child, macAddress: Self.child)
        childConfiguration.packetFilter = .linuxDefault
        let (childPort, childReady) = try virtualSwitch.addPort(childConfiguration)
        let (hostPort, hostReady) = try virtualSwitch.addPort(SwitchPortConfiguration(name: "host", kind: .host))
        let endpoint = try VirtioFrameEndpoint.tap(namespace.tap)
        let pump = try HostPortPump(endpoint: endpoint, port: hostPort, ready: hostReady, switch: virtualSwitch, name: "tap-pump")
        return (virtualSwitch, childPort, childReady, hostPort, endpoint, pump)
    }

    @Test("internal switch: child → TAP appears on the host side; host side → TAP reaches the child",
          .enabled(if: unavailableReason == nil, "\(unavailableReason ?? "")"))
    func internalSwitchBothWays() throws {
        let namespace = try Self.makeNamespace()
        let (virtualSwitch, childPort, childReady, hostPort, _, pump) = try Self.internalSwitch(on: namespace)
        defer { pump.stop() }

        // Child → host: a plain frame, then an LSO frame whose IPv4 length the switch fixes.
        let outbound = ethernetFrame(from: Self.child, to: .broadcast, count: 200, fill: 0x5A, etherType: Self.testEtherType)
        virtualSwitch.send([NetworkFrame(bytes: outbound)], from: childPort)
        #expect(try Self.readTestFrame(namespace.hostSide) == outbound)

        let lso = PacketBuilder.ipv4TCP(payload: 4000, lsoStyle: true, from: Self.child, to: Self.hostPeer)
        virtualSwitch.send([NetworkFrame(bytes: lso, offload: FrameOffload(
            segmentation: .init(maximumSegmentSize: 1448, transportOffset: 34, isIPv6: false)))], from: childPort)
        if let seen = try Self.readTestFrame(namespace.hostSide) {
            // The host sees either the whole GSO packet or its segments; either way the IPv4
            // total length matches what was delivered, never the 0 Linux left in it.
            let totalLength = Int(seen[16]) << 8 | Int(seen[17])
            #expect(totalLength == seen.count - 14)
            #expect(PacketBuilder.fold(PacketBuilder.sum(Array(seen[14..<34]))) == 0xFFFF)
        } else {
            Issue.record("the LSO frame never appeared on the host side")
        }

        // Host → child.
        let inbound = ethernetFrame(from: Self.hostPeer, to: Self.child, count: 300, fill: 0xC3, etherType: Self.testEtherType)
        #expect(try FrameIO.write(namespace.hostSide, header: [], frame: inbound))
        var received: [NetworkFrame] = []
        let deadline = MonotonicClock.nanoseconds() + 5_000_000_000
        while MonotonicClock.nanoseconds() < deadline, !received.contains(where: { $0.bytes == inbound }) {
            _ = try childReady.wait(timeoutMilliseconds: 200)
            received += virtualSwitch.receive(for: childPort)
        }
        #expect(received.contains { $0.bytes == inbound })
        #expect(virtualSwitch.counters(of: hostPort)?.framesIn ?? 0 >= 1)
        #expect(pump.failures == 0)
    }

    /// The host's stack answers an ARP request while the TAP write carrying it runs, so the
    /// thread that wrote it directly takes the reply at once (`HostPortPump.pickup`) and the
    /// child's port holds it when `send` returns. The pump thread is stopped first: nothing
    /// else reads the TAP.
    @Test("internal switch: a reply the host queues during a direct write is switched before the write returns",
          .enabled(if: unavailableReason == nil, "\(unavailableReason ?? "")"))
    func directWriteTakesTheHostsReply() throws {
        let hostIP: UInt32 = 0x0AD5_5B01  // 10.213.91.1
        let childIP: UInt32 = 0x0AD5_5B02
        let namespace = try Self.makeNamespace(address: hostIP)
        let (virtualSwitch, childPort, _, hostPort, endpoint, pump) = try Self.internalSwitch(on: namespace)
        pump.stop()
        virtualSwitch.setDirectSink(pump.directSink(for: endpoint), pickup: pump.pickup, for: hostPort)

        func be32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) } }
        // Who has hostIP, tell childIP (the guest's own ARP, compiled here as in `AdapterTests`).
        let request = IPv4Endpoint(macAddress: Self.child, address: childIP).arpRequest(for: hostIP)
        virtualSwitch.send([NetworkFrame(bytes: request)], from: childPort)

        func isARPReply(_ frame: [UInt8]) -> Bool {
            guard frame.count >= 42 else { return false }
            return frame[12...13].elementsEqual([0x08, 0x06]) && frame[20...21].elementsEqual([0x00, 0x02])
        }
        let replies = virtualSwitch.receive(for: childPort).map(\.bytes).filter(isARPReply)
        try #require(replies.count == 1, "no ARP reply was waiting for the child when send returned")
        let reply = replies[0]
        #expect(Array(reply[0..<6]) == Self.child.bytes)          // to the child
        #expect(Array(reply[28..<32]) == be32(hostIP))            // sender: the host's address
        #expect(Array(reply[32..<38]) == Self.child.bytes)        // target: the child
        #expect(Array(reply[38..<42]) == be32(childIP))
        #expect(pump.failures == 0)
        virtualSwitch.setDirectSink(nil, for: hostPort)
    }

    /// Reads `count` test frames from `descriptor`, in the order they arrive, with a deadline.
    static func readTestFrames(_ descriptor: OwnedDescriptor, count: Int) throws -> [[UInt8]] {
        var frames: [[UInt8]] = []
        while frames.count < count, let frame = try readTestFrame(descriptor) { frames.append(frame) }
        return frames
    }

    static func numberedFrames(_ count: Int, size: Int, from source: MACAddress = child,
                               to destination: MACAddress = .broadcast) -> [NetworkFrame] {
        (0..<count).map { index in
            NetworkFrame(bytes: ethernetFrame(from: source, to: destination, count: size - 2, fill: 0x3C,
                                              etherType: Self.testEtherType) + [UInt8(index >> 8), UInt8(index & 0xFF)])
        }
    }

    @Test("a batch of frames written through one io_uring submission reaches the TAP's host side whole and in order, by descriptor and as the ring's registered file",
          .enabled(if: unavailableReason == nil, "\(unavailableReason ?? "")"))
    func ringWritesABatchInOrder() throws {
        let namespace = try Self.makeNamespace()
        let endpoint = try VirtioFrameEndpoint.tap(namespace.tap)
        for registering in [nil, endpoint.descriptor.rawValue] {
            guard let ring = FrameWriteRing(registering: registering) else {
                // Allowed to be missing (kernel.io_uring_disabled, old kernels): the writers fall
                // back to one writev per frame, which the other tests cover.
                print("FrameWriteRing unavailable here: io_uring refused")
                return
            }
            // More than one submission's worth.
            let frames = Self.numberedFrames(FrameWriteRing.entries + 36, size: 300)
            var outcomes: [FrameWriteRing.Outcome] = []
            ring.write(frames[...], to: endpoint, outcomes: &outcomes)
            #expect(outcomes == Array(repeating: .written, count: frames.count), "registered: \(registering != nil)")
            #expect(!ring.isBroken)
            #expect(try Self.readTestFrames(namespace.hostSide, count: frames.count) == frames.map(\.bytes))
        }
    }

    /// Writes `frames` to the TAP's host side (each lands in the TAP's queue during its send).
    static func sendFromHostSide(_ frames: [NetworkFrame], on namespace: Namespace) throws {
        for frame in frames { #expect(try FrameIO.write(namespace.hostSide, header: [], frame: frame.bytes)) }
    }

    /// Whether io_uring rings can be made here (kernel.io_uring_disabled, old kernels: the
    /// readers and writers then go frame by frame, which the other tests cover).
    static let ringsAvailable = FrameReadRing(registering: nil, bufferSize: 64) != nil

    @Test("a run of frames read through one io_uring submission comes out whole and in the TAP's order, and a read past the last finds nothing",
          .enabled(if: unavailableReason == nil, "\(unavailableReason ?? "")"),
          .enabled(if: ringsAvailable, "io_uring is refused here"))
    func ringReadsARunInOrder() throws {
        let namespace = try Self.makeNamespace()
        let endpoint = try VirtioFrameEndpoint.tap(namespace.tap)
        for registering in [nil, endpoint.descriptor.rawValue] {
            let ring = try #require(FrameReadRing(registering: registering, bufferSize: endpoint.readSize))
            let sent = Self.numberedFrames(40, size: 300, from: Self.hostPeer, to: Self.child)
            try Self.sendFromHostSide(sent, on: namespace)
            var read: [[UInt8]] = []
            var empties = 0
            var emptyBeforeAFrame = false
            // The namespace's own stack may queue a frame of its own (IPv6 neighbour discovery);
            // only the test's are compared.
            #expect(ring.read(FrameReadRing.entries, from: endpoint) { result in
                switch result {
                case .read(let bytes, let count):
                    if empties > 0 { emptyBeforeAFrame = true }
                    if case .frame(let frame) = endpoint.frame(in: bytes, count: count),
                       frame.bytes.count >= 14, frame.bytes[12] == 0x88, frame.bytes[13] == 0xB5 {
                        read.append(frame.bytes)
                    }
                case .empty: empties += 1
                case .failed(let code): Issue.record("read failed: errno \(code)")
                }
            })
            #expect(read == sent.map(\.bytes), "registered: \(registering != nil)")
            #expect(empties > 0 && !emptyBeforeAFrame, "the reads past the last frame found nothing")
            #expect(!ring.isBroken)
        }
    }

    @Test("internal switch: a burst the host sends reaches the child's port whole and in order through the pump's runs of reads",
          .enabled(if: unavailableReason == nil, "\(unavailableReason ?? "")"))
    func hostBurstReachesTheChildInOrder() throws {
        let namespace = try Self.makeNamespace()
        let (virtualSwitch, childPort, childReady, _, _, pump) = try Self.internalSwitch(on: namespace)
        defer { pump.stop() }
        // More than the TAP queues at once is not sent (its queue holds 500 frames); more than a
        // batch is, so the pump's runs grow and end.
        let sent = Self.numberedFrames(300, size: 200, from: Self.hostPeer, to: Self.child)
        try Self.sendFromHostSide(sent, on: namespace)
        var received: [[UInt8]] = []
        let deadline = MonotonicClock.nanoseconds() + 5_000_000_000
        while MonotonicClock.nanoseconds() < deadline, received.count < sent.count {
            _ = try childReady.wait(timeoutMilliseconds: 200)
            received += virtualSwitch.receive(for: childPort).map(\.bytes).filter { $0[12] == 0x88 && $0[13] == 0xB5 }
        }
        #expect(received == sent.map(\.bytes))
        #expect(pump.failures == 0 && pump.unusableReads == 0)
        // The frames after each batch's first came through the ring, where there is one.
        #expect(!Self.ringsAvailable || pump.ringReads > 0)
    }

    @Test("internal switch: a child that queues frames for the host faster than the TAP takes them keeps neither the host's frames from the children nor the pump from stopping",
          .enabled(if: unavailableReason == nil, "\(unavailableReason ?? "")"))
    func aFloodToTheHostStarvesNeitherReadsNorStop() throws {
        let namespace = try Self.makeNamespace()
        let (virtualSwitch, childPort, childReady, hostPort, _, pump) = try Self.internalSwitch(on: namespace)
        let flooding = Atomic<Bool>(true)
        let batch = Self.numberedFrames(HostPortPump.batch, size: 60)
        let feeder = try OSThread.spawn(name: "flood") {
            while flooding.load(ordering: .relaxed) { virtualSwitch.send(batch, from: childPort) }
        }
        defer {
            flooding.store(false, ordering: .relaxed)
            feeder.join()
            pump.stop()
        }
        // The host port's queue stays full: the pump writes a full batch every round.
        let full = MonotonicClock.nanoseconds() + 5_000_000_000
        while virtualSwitch.queuedFrames(for: hostPort) < HostPortPump.batch, MonotonicClock.nanoseconds() < full { usleep(1000) }
        #expect(virtualSwitch.queuedFrames(for: hostPort) >= HostPortPump.batch)
        // A frame from the host still reaches the child.
        let inbound = ethernetFrame(from: Self.hostPeer, to: Self.child, count: 300, fill: 0xC3, etherType: Self.testEtherType)
        #expect(try FrameIO.write(namespace.hostSide, header: [], frame: inbound))
        var arrived = false
        let deadline = MonotonicClock.nanoseconds() + 5_000_000_000
        while !arrived, MonotonicClock.nanoseconds() < deadline {
            _ = try childReady.wait(timeoutMilliseconds: 100)
            arrived = virtualSwitch.receive(for: childPort).contains { $0.bytes == inbound }
        }
        #expect(arrived, "the pump never read the TAP")
        // And the pump stops while the flood goes on.
        let stopped = Atomic<Bool>(false)
        let stopper = try OSThread.spawn(name: "stopper") {
            pump.stop()
            stopped.store(true, ordering: .releasing)
        }
        let stopDeadline = MonotonicClock.nanoseconds() + 5_000_000_000
        while !stopped.load(ordering: .acquiring), MonotonicClock.nanoseconds() < stopDeadline { usleep(1000) }
        let didStop = stopped.load(ordering: .acquiring)
        #expect(didStop, "the pump did not stop")
        flooding.store(false, ordering: .relaxed)
        stopper.join()
    }

    /// An endpoint whose every read fails while poll calls it readable (a TAP whose interface
    /// was deleted; here a directory, which poll always calls readable and read refuses) is
    /// read about ten times a second, not in a loop.
    @Test("an endpoint whose every read fails is read again only after a pause, and the pump still stops")
    func anEndpointThatAlwaysFailsIsNotSpunOn() throws {
        let virtualSwitch = VirtualSwitch(name: "Internal", kind: .internal(hostInterface: "gone"))
        let (hostPort, hostReady) = try virtualSwitch.addPort(SwitchPortConfiguration(name: "host", kind: .host))
        let raw = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try #require(raw >= 0)
        let endpoint = VirtioFrameEndpoint(descriptor: OwnedDescriptor(adopting: FileDescriptor(rawValue: raw)), headerSize: 12)
        let pump = try HostPortPump(endpoint: endpoint, port: hostPort, ready: hostReady, switch: virtualSwitch, name: "fail-pump")
        usleep(1_000_000)
        let failures = pump.failures
        pump.stop()
        #expect(failures >= 1 && failures <= 30, "\(failures) failed reads in a second")
    }

    @Test("internal switch: a run of frames sent directly to the host port arrives in order, nothing blocked or failed",
          .enabled(if: unavailableReason == nil, "\(unavailableReason ?? "")"))
    func directRunArrivesInOrder() throws {
        let namespace = try Self.makeNamespace()
        let (virtualSwitch, childPort, _, hostPort, endpoint, pump) = try Self.internalSwitch(on: namespace)
        defer { pump.stop() }
        virtualSwitch.setDirectSink(pump.directSink(for: endpoint), pickup: pump.pickup, for: hostPort)
        defer { virtualSwitch.setDirectSink(nil, for: hostPort) }
        let frames = Self.numberedFrames(150, size: 200)
        virtualSwitch.send(frames, from: childPort)
        #expect(virtualSwitch.queuedFrames(for: hostPort) == 0)
        #expect(try Self.readTestFrames(namespace.hostSide, count: frames.count) == frames.map(\.bytes))
        #expect(pump.blockedWrites == 0 && pump.failures == 0)
    }

    @Test("external switch: the TAP joined to the uplink sends frames out of the interface and receives what it receives",
          .enabled(if: unavailableReason == nil, "\(unavailableReason ?? "")"),
          .enabled(if: UplinkMirror.unavailableReason == nil, "\(UplinkMirror.unavailableReason ?? "")"))
    func externalUplink() throws {
        let namespace = try Self.makeNamespace(external: true)
        let uplink = try #require(namespace.uplink)
        try TAPDevice.configure(namespace.tap, headerSize: Int32(VirtioNetHeader.size), offloads: [.checksum])
        let virtualSwitch = VirtualSwitch(name: "External", kind: .external(uplinkInterface: namespace.interface))
        var childConfiguration = SwitchPortConfiguration(name: "child", kind: .child, macAddress: Self.child)
        childConfiguration.packetFilter = .linuxDefault
        let (childPort, childReady) = try virtualSwitch.addPort(childConfiguration)
        let (uplinkPort, uplinkReady) = try virtualSwitch.addPort(SwitchPortConfiguration(name: "uplink", kind: .uplink))
        let pump = try HostPortPump(endpoint: uplink, port: uplinkPort, ready: uplinkReady,
                                    switch: virtualSwitch, name: "uplink-pump")
        defer { pump.stop() }

        // Out through the uplink: the frame leaves the interface, so the TAP's reader sees it.
        let outbound = ethernetFrame(from: Self.child, to: Self.hostPeer, count: 120, fill: 1, etherType: Self.testEtherType)
        virtualSwitch.send([NetworkFrame(bytes: outbound)], from: childPort)
        let seen = try Self.readTestFrame(namespace.tap, headerSize: VirtioNetHeader.size)
        #expect(seen.map { Array($0.dropFirst(VirtioNetHeader.size)) } == outbound)

        // In through the uplink: a frame arriving on the interface (written to the TAP).
        let inbound = ethernetFrame(from: Self.hostPeer, to: Self.child, count: 90, fill: 2, etherType: Self.testEtherType)
        #expect(try FrameIO.write(namespace.tap, header: VirtioNetHeader().bytes(), frame: inbound))
        var received: [NetworkFrame] = []
        let deadline = MonotonicClock.nanoseconds() + 5_000_000_000
        while MonotonicClock.nanoseconds() < deadline, !received.contains(where: { $0.bytes == inbound }) {
            _ = try childReady.wait(timeoutMilliseconds: 200)
            received += virtualSwitch.receive(for: childPort)
        }
        #expect(received.contains { $0.bytes == inbound })
    }
}
