import ControlProtocol
import DeviceModel
import HyperV
import LinuxSupport
import Testing
import VMBusProtocol

@Suite("Root↔parent control protocol")
struct ControlProtocolTests {
    static let attachment = PartitionAttachment(
        partitionID: 7, name: "alpha", memorySize: 64 << 20, processorCount: 2,
        clock: ReferenceClock(tscFrequencyHz: 2_600_000_000, scale: 0x0123_4567_89AB_CDEF, guestTSCOffset: 42,
                              referenceOffset: -99),
        processors: [ProcessorPages(vp: 0, synicEnabled: true, messagePage: 0x1000, eventFlagsPage: 0x2000),
                     ProcessorPages(vp: 1, synicEnabled: false, messagePage: nil, eventFlagsPage: nil)],
        devices: [DeviceSpec(kind: "heartbeat", instance: GUID(0x1234_5678, 0x9ABC, 0x4DEF, 0x8123_4567_89AB_CDEF),
                             settings: Array("{}".utf8)),
                  DeviceSpec(kind: "bench", instance: GUID(1, 2, 3, 4), settings: Array(#"{"a":[1,2]}"#.utf8),
                             resources: [.file(path: "/srv/a.img", writable: true), .file(path: "/srv/b.img", writable: false)])])

    static let rootMessages: [RootMessage] = [
        .welcome(rootProcessID: 1234),
        .partitionAttached(attachment),
        .partitionDetached(partitionID: 7),
        .synicPagesChanged(partitionID: 7, ProcessorPages(vp: 1, synicEnabled: true, messagePage: 0x3000, eventFlagsPage: 0x4000)),
        .guestMessage(partitionID: 7, vp: 1, connectionID: 4, messageType: 1, payload: [1, 2, 3]),
        .doorbell(requestID: 3, partitionID: 7, vp: 0, sint: 2),
        .requestFailed(requestID: 3, reason: "no such processor"),
        .shutdownGuest(partitionID: 7),
        .portWrite(partitionID: 7, vp: 1, port: 0x3F8, size: 1, value: 0x41),
        .portRead(requestID: 9, partitionID: 7, vp: 0, port: 0x3FD, size: 1),
        .interruptLine(requestID: 10, partitionID: 7, pin: 4),
        .deviceAdded(partitionID: 7, attachment.devices[1]),
        .deviceRemoved(partitionID: 7, instance: GUID(1, 2, 3, 4)),
        .deviceChanged(partitionID: 7, attachment.devices[0]),
        .portReadString(requestID: 11, partitionID: 7, vp: 1, port: 0x1F0, size: 2, count: 2048),
        .portWriteString(partitionID: 7, vp: 0, port: 0x1F0, size: 2, bytes: [UInt8](repeating: 0x5A, count: 512)),
        .switchAttached(SwitchSpec(name: "lab", kind: .internal, mtu: 9000, hostInterface: "hv-lab")),
        .switchAttached(SwitchSpec(name: "p", kind: .private, mtu: 1500, hostInterface: "")),
        .switchAttached(SwitchSpec(name: "up", kind: .external, mtu: 1500, hostInterface: "eth0")),
        .switchDetached(name: "lab"),
        .requestStatistics(requestID: 11, partitionID: 7),
    ]

    static let channelRecords = [
        ChannelCounterRecord(relID: 1, subChannelIndex: 0, device: "heartbeat", isOpen: true, packetsIn: 5, bytesIn: 464,
                             signalsIn: 5, packetsOut: 6, bytesOut: 520, signalsOut: 6),
        ChannelCounterRecord(relID: 9, subChannelIndex: 3, device: "bench", isOpen: false, packetsIn: .max, bytesIn: 1 << 40,
                             signalsIn: 0, packetsOut: 0, bytesOut: 0, signalsOut: 17),
    ]

    static let parentMessages: [ParentMessage] = [
        .hello(parentProcessID: 99),
        .registerMessageConnection(partitionID: 7, connectionID: 1),
        .unregisterMessageConnection(partitionID: 7, connectionID: 1),
        .registerEventConnection(partitionID: 7, connectionID: 0x2001),
        .unregisterEventConnection(partitionID: 7, connectionID: 0x2001),
        .requestDoorbell(requestID: 5, partitionID: 7, vp: 1, sint: 2),
        .postMessage(partitionID: 7, vp: 0, sint: 2, messageType: 1, payload: [UInt8](repeating: 9, count: 240)),
        .partitionStatus(partitionID: 7, facts: ["heartbeat.sequence": "12", "heartbeat.seen": "now"]),
        .registerPorts(partitionID: 7, base: 0x3F8, count: 8),
        .registerPorts(partitionID: 7, base: 0x1F0, count: 8, accessesPerSecond: 1_000_000),
        .portReadResult(requestID: 9, value: 0x60),
        .requestInterruptLine(requestID: 10, partitionID: 7, pin: 4),
        .consoleOutput(partitionID: 7, bytes: Array("hello\n".utf8)),
        .portReadStringResult(requestID: 11, bytes: [UInt8](repeating: 0xA5, count: 4096)),
        .partitionStatistics(requestID: 11, partitionID: 7, channels: channelRecords),
        .partitionStatistics(requestID: 12, partitionID: 8, channels: []),
        .partitionReady(partitionID: 7),
    ]

    @Test(arguments: rootMessages)
    func rootMessagesRoundTrip(_ message: RootMessage) throws {
        #expect(try RootMessage(parsing: message.bytes) == message)
    }

    @Test(arguments: parentMessages)
    func parentMessagesRoundTrip(_ message: ParentMessage) throws {
        #expect(try ParentMessage(parsing: message.bytes) == message)
    }

    @Test(arguments: rootMessages)
    func truncatedRootMessagesAreRejected(_ message: RootMessage) {
        let bytes = message.bytes
        for length in 0..<bytes.count {
            #expect(throws: ControlProtocolError.self) { _ = try RootMessage(parsing: Array(bytes.prefix(length))) }
        }
    }

    @Test func trailingBytesAndUnknownKindsAndVersionsAreRejected() {
        #expect(throws: ControlProtocolError.trailingBytes) { _ = try ParentMessage(parsing: ParentMessage.hello(parentProcessID: 1).bytes + [0]) }
        let version = ControlProtocol.version
        let (low, high) = (UInt8(truncatingIfNeeded: version), UInt8(truncatingIfNeeded: version >> 8))
        #expect(throws: ControlProtocolError.unknownKind(999)) { _ = try ParentMessage(parsing: [low, high, 0xE7, 0x03]) }
        #expect(throws: ControlProtocolError.unsupportedVersion(version + 1)) {
            _ = try RootMessage(parsing: [low &+ 1, high, 1, 0])
        }
    }

    @Test func stringIOLargerThanAPageIsRejected() {
        let write = RootMessage.portWriteString(partitionID: 7, vp: 0, port: 0x1F0, size: 2, bytes: [UInt8](repeating: 1, count: 4098))
        #expect(throws: ControlProtocolError.self) { _ = try RootMessage(parsing: write.bytes) }
        let result = ParentMessage.portReadStringResult(requestID: 1, bytes: [UInt8](repeating: 1, count: 4100))
        #expect(throws: ControlProtocolError.self) { _ = try ParentMessage(parsing: result.bytes) }
    }

    @Test func statisticsOfTheMostChannelsFitOneDatagramAndMoreAreLeftOut() throws {
        let longest = ChannelCounterRecord(
            relID: .max, subChannelIndex: .max, device: String(repeating: "d", count: 200), isOpen: true,
            packetsIn: .max, bytesIn: .max, signalsIn: .max, packetsOut: .max, bytesOut: .max, signalsOut: .max)
        let message = ParentMessage.partitionStatistics(
            requestID: 1, partitionID: 2, channels: Array(repeating: longest, count: ChannelCounterRecord.limit + 10))
        #expect(message.bytes.count <= SequencedPacketSocket.maximumMessageSize)
        guard case .partitionStatistics(_, _, let channels) = try ParentMessage(parsing: message.bytes) else {
            Issue.record("not statistics")
            return
        }
        #expect(channels.count == ChannelCounterRecord.limit)
        // The device name is cut to what the receiver takes.
        #expect(channels.first?.device == String(repeating: "d", count: 64))
        // A count above the limit is refused, not trusted.
        var bytes = ParentMessage.partitionStatistics(requestID: 1, partitionID: 2, channels: []).bytes
        bytes.removeLast(4)
        bytes += [0xFF, 0xFF, 0, 0]
        #expect(throws: ControlProtocolError.truncated) { _ = try ParentMessage(parsing: bytes) }
    }

    @Test(arguments: parentMessages)
    func truncatedParentMessagesAreRejected(_ message: ParentMessage) {
        let bytes = message.bytes
        for length in 0..<bytes.count {
            #expect(throws: ControlProtocolError.self) { _ = try ParentMessage(parsing: Array(bytes.prefix(length))) }
        }
    }

    @Test func oversizedPostMessagePayloadIsRejected() {
        var bytes = ParentMessage.postMessage(partitionID: 1, vp: 0, sint: 2, messageType: 1, payload: []).bytes
        bytes.removeLast(4)
        bytes += [241, 0, 0, 0] + [UInt8](repeating: 0, count: 241)
        #expect(throws: ControlProtocolError.self) { _ = try ParentMessage(parsing: bytes) }
    }

    @Test func randomBytesNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            let bytes = (0..<Int.random(in: 0..<64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            _ = try? RootMessage(parsing: [1, 0] + bytes)
            _ = try? ParentMessage(parsing: [1, 0] + bytes)
        }
    }

    @Test func attachmentsCarryTheGuestMemoryAndTheDevicesResources() throws {
        let (rootSide, parentSide) = try SequencedPacketSocket.pair()
        let memory = try MemoryFile.create(name: "attached", size: 4096)
        let first = try MemoryFile.create(name: "first-disk", size: 8192)
        let second = try MemoryFile.create(name: "second-disk", size: 12288)
        #expect(RootMessage.partitionAttached(Self.attachment).descriptorCount == 3)
        try ControlChannel(socket: rootSide).send(.partitionAttached(Self.attachment),
                                                  descriptors: [memory.rawValue, first.rawValue, second.rawValue])
        guard case .message(let message, let descriptors) = try ControlChannel(socket: parentSide).receiveRootMessage() else {
            Issue.record("closed")
            return
        }
        #expect(message == .partitionAttached(Self.attachment))
        #expect(try descriptors.map { try MemoryFile.size(of: $0) } == [4096, 8192, 12288])
    }

    @Test func anAttachmentMissingAResourceIsRejected() throws {
        let (rootSide, parentSide) = try SequencedPacketSocket.pair()
        let memory = try MemoryFile.create(name: "attached", size: 4096)
        try rootSide.send(RootMessage.partitionAttached(Self.attachment).bytes, descriptors: [memory.rawValue])
        #expect(throws: ControlProtocolError.self) { _ = try ControlChannel(socket: parentSide).receiveRootMessage() }
    }

    @Test func aMessageWithoutItsDescriptorIsRejected() throws {
        let (rootSide, parentSide) = try SequencedPacketSocket.pair()
        try rootSide.send(RootMessage.doorbell(requestID: 1, partitionID: 1, vp: 0, sint: 2).bytes)
        #expect(throws: ControlProtocolError.self) { _ = try ControlChannel(socket: parentSide).receiveRootMessage() }
    }

    /// An internal or external switch travels with its host side's descriptor, a private one
    /// with none; a switch of an unknown kind or without its descriptor is refused.
    @Test func switchesCarryTheirHostSide() throws {
        let internalSwitch = RootMessage.switchAttached(SwitchSpec(name: "lab", kind: .internal, mtu: 1500, hostInterface: "hv-lab"))
        let privateSwitch = RootMessage.switchAttached(SwitchSpec(name: "p", kind: .private, mtu: 1500, hostInterface: ""))
        #expect(internalSwitch.descriptorCount == 1)
        #expect(privateSwitch.descriptorCount == 0)
        let (rootSide, parentSide) = try SequencedPacketSocket.pair()
        let tap = try MemoryFile.create(name: "stand-in-tap", size: 4096)
        try ControlChannel(socket: rootSide).send(internalSwitch, descriptors: [tap.rawValue])
        guard case .message(let message, let descriptors) = try ControlChannel(socket: parentSide).receiveRootMessage() else {
            Issue.record("closed")
            return
        }
        #expect(message == internalSwitch)
        #expect(descriptors.count == 1)
        try rootSide.send(internalSwitch.bytes)
        #expect(throws: ControlProtocolError.self) { _ = try ControlChannel(socket: parentSide).receiveRootMessage() }
        var unknownKind = privateSwitch.bytes
        unknownKind[4 + 4 + 1] = 9  // version, kind, the name's length (u32) and its one byte, then the switch kind
        #expect(throws: ControlProtocolError.self) { _ = try RootMessage(parsing: unknownKind) }
    }

    @Test func referenceClockMatchesTheRootsFormula() {
        let clock = ReferenceClock(tscFrequencyHz: 1_000_000_000, scale: ReferenceTSCPage.scale(tscFrequencyHz: 1_000_000_000), guestTSCOffset: 0,
                                   referenceOffset: 0)
        // 10^9 ticks at 1 GHz is one second: 10^7 units of 100 ns.
        #expect(abs(Int64(clock.referenceTime(hostTSC: 1_000_000_000)) - 10_000_000) <= 1)
    }
}
