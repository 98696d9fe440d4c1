import DeviceModel
import HyperV
import LinuxSupport
import VMBusProtocol

/// The root↔parent control protocol: one message per SOCK_SEQPACKET datagram, starting
/// with a u16 protocol version and a u16 kind. Descriptors (guest memory, eventfds) travel
/// beside the bytes as SCM_RIGHTS, in the order the message's fields name them.
public enum ControlProtocol {
    /// Bumped on any incompatible change.
    public static let version: UInt16 = 2
}

/// Reference-time parameters as the parent needs them to compute a partition's reference time
/// from its own RDTSC (mirrors `ReferenceTimeParameters` in the root).
public struct ReferenceClock: Hashable, Sendable {
    public var tscFrequencyHz: UInt64
    public var scale: UInt64
    public var guestTSCOffset: UInt64
    public var referenceOffset: Int64

    public init(tscFrequencyHz: UInt64, scale: UInt64, guestTSCOffset: UInt64, referenceOffset: Int64) {
        self.tscFrequencyHz = tscFrequencyHz
        self.scale = scale
        self.guestTSCOffset = guestTSCOffset
        self.referenceOffset = referenceOffset
    }

    /// Partition reference time (100 ns units) at host TSC `hostTSC`.
    public func referenceTime(hostTSC: UInt64) -> UInt64 {
        ReferenceTSCPage.referenceTime(tsc: hostTSC &+ guestTSCOffset, scale: scale, offset: referenceOffset)
    }
}

/// One virtual processor's SynIC pages, as the parent needs them to set event flags.
public struct ProcessorPages: Hashable, Sendable {
    public var vp: UInt32
    public var synicEnabled: Bool
    public var messagePage: UInt64?
    public var eventFlagsPage: UInt64?

    public init(vp: UInt32, synicEnabled: Bool, messagePage: UInt64?, eventFlagsPage: UInt64?) {
        self.vp = vp
        self.synicEnabled = synicEnabled
        self.messagePage = messagePage
        self.eventFlagsPage = eventFlagsPage
    }
}

/// A child partition handed to the parent. Its guest-memory memfd travels as the message's
/// one descriptor.
public struct PartitionAttachment: Hashable, Sendable {
    public var partitionID: UInt32
    public var name: String
    public var memorySize: UInt64
    public var processorCount: UInt32
    public var clock: ReferenceClock
    public var processors: [ProcessorPages]
    /// The devices the parent builds for the partition, as the root resolved them.
    public var devices: [DeviceSpec]

    public init(partitionID: UInt32, name: String, memorySize: UInt64, processorCount: UInt32, clock: ReferenceClock,
                processors: [ProcessorPages], devices: [DeviceSpec]) {
        self.partitionID = partitionID
        self.name = name
        self.memorySize = memorySize
        self.processorCount = processorCount
        self.clock = clock
        self.processors = processors
        self.devices = devices
    }
}

/// Messages from the root scheduler to the parent partition.
public enum RootMessage: Hashable, Sendable {
    /// Sent first on every connection.
    case welcome(rootProcessID: UInt32)
    /// A partition to serve. Descriptors: its guest memory (memfd), then the host resources of
    /// its devices, device by device, in the order each device lists them.
    case partitionAttached(PartitionAttachment)
    /// The partition stopped: release everything of it.
    case partitionDetached(partitionID: UInt32)
    /// A processor's SynIC pages changed.
    case synicPagesChanged(partitionID: UInt32, ProcessorPages)
    /// The guest posted a message to a connection the parent registered (HvPostMessage).
    case guestMessage(partitionID: UInt32, vp: UInt32, connectionID: UInt32, messageType: UInt32, payload: [UInt8])
    /// The answer to `requestDoorbell`; one descriptor: the doorbell eventfd.
    case doorbell(requestID: UInt32, partitionID: UInt32, vp: UInt32, sint: UInt8)
    /// A request could not be carried out.
    case requestFailed(requestID: UInt32, reason: String)
    /// A user asked for an orderly guest shutdown (through the shutdown integration service).
    case shutdownGuest(partitionID: UInt32)
    /// The guest wrote `value` (`size` bytes) to an I/O port the parent intercepts. Posted: the
    /// processor does not wait.
    case portWrite(partitionID: UInt32, vp: UInt32, port: UInt16, size: UInt8, value: UInt32)
    /// The guest reads an I/O port the parent intercepts; the processor waits for `portReadResult`.
    case portRead(requestID: UInt32, partitionID: UInt32, vp: UInt32, port: UInt16, size: UInt8)
    /// The answer to `requestInterruptLine`; one descriptor: an eventfd bound to that IOAPIC pin.
    case interruptLine(requestID: UInt32, partitionID: UInt32, pin: UInt8)
    /// A device was added to a running partition; descriptors: its host resources, in order.
    case deviceAdded(partitionID: UInt32, DeviceSpec)
    /// The device `instance` was removed from a running partition.
    case deviceRemoved(partitionID: UInt32, instance: GUID)
    /// The device `spec.instance` of a running partition has new settings; descriptors: its host
    /// resources under those settings, in order.
    case deviceChanged(partitionID: UInt32, DeviceSpec)
    /// A string IN (REP INS) of `count` elements of `size` bytes from an intercepted port, as one
    /// request; the processor waits for `portReadStringResult`.
    case portReadString(requestID: UInt32, partitionID: UInt32, vp: UInt32, port: UInt16, size: UInt8, count: UInt32)
    /// A string OUT (REP OUTS) of whole `size`-byte elements to an intercepted port. Posted.
    case portWriteString(partitionID: UInt32, vp: UInt32, port: UInt16, size: UInt8, bytes: [UInt8])
    /// A virtual switch to run (or to run again, after a parent restart), sent before the
    /// partitions whose NICs use it. Descriptors: its host side (`SwitchSpec.descriptorCount`).
    case switchAttached(SwitchSpec)
    /// The switch `name` was deleted (no NIC uses it).
    case switchDetached(name: String)
    /// Asks for the partition's channel counters; answered by `partitionStatistics`.
    case requestStatistics(requestID: UInt32, partitionID: UInt32)
    /// The saved state of a partition's parent-side services, which an earlier parent committed:
    /// sent before the partition's `partitionAttached`, in as many messages as it takes.
    case savedState(partitionID: UInt32, records: [StateRecord])
    /// A guest message with its number; it replaces `guestMessage`.
    case sequencedGuestMessage(SequencedGuestMessage)

    enum Kind: UInt16 {
        case welcome = 1, partitionAttached, partitionDetached, synicPagesChanged, guestMessage, doorbell,
             requestFailed, shutdownGuest, portWrite, portRead, interruptLine, deviceAdded, deviceRemoved, deviceChanged,
             portReadString, portWriteString,
             switchAttached, switchDetached, savedState, sequencedGuestMessage
        case requestStatistics = 32
    }

    /// The most bytes one string I/O message carries: KVM hands user space at most a page of
    /// string I/O per exit.
    public static let maximumStringBytes = 4096

    /// The number of descriptors that must accompany the message.
    public var descriptorCount: Int {
        switch self {
        case .partitionAttached(let attachment): 1 + attachment.devices.reduce(0) { $0 + $1.resources.count }
        case .deviceAdded(_, let device), .deviceChanged(_, let device): device.resources.count
        case .doorbell, .interruptLine: 1
        case .switchAttached(let spec): spec.descriptorCount
        default: 0
        }
    }

    public var bytes: [UInt8] {
        var out = WireEncoder()
        out.u16(ControlProtocol.version)
        switch self {
        case .welcome(let pid):
            out.u16(Kind.welcome.rawValue)
            out.u32(pid)
        case .partitionAttached(let attachment):
            out.u16(Kind.partitionAttached.rawValue)
            out.u32(attachment.partitionID)
            out.string(attachment.name)
            out.u64(attachment.memorySize)
            out.u32(attachment.processorCount)
            out.u64(attachment.clock.tscFrequencyHz)
            out.u64(attachment.clock.scale)
            out.u64(attachment.clock.guestTSCOffset)
            out.i64(attachment.clock.referenceOffset)
            out.u32(UInt32(attachment.processors.count))
            for pages in attachment.processors { encode(pages, into: &out) }
            out.u32(UInt32(attachment.devices.count))
            for device in attachment.devices { encode(device, into: &out) }
        case .partitionDetached(let id):
            out.u16(Kind.partitionDetached.rawValue)
            out.u32(id)
        case .synicPagesChanged(let id, let pages):
            out.u16(Kind.synicPagesChanged.rawValue)
            out.u32(id)
            encode(pages, into: &out)
        case .guestMessage(let id, let vp, let connection, let type, let payload):
            out.u16(Kind.guestMessage.rawValue)
            out.u32(id)
            out.u32(vp)
            out.u32(connection)
            out.u32(type)
            out.data(payload)
        case .doorbell(let request, let id, let vp, let sint):
            out.u16(Kind.doorbell.rawValue)
            out.u32(request)
            out.u32(id)
            out.u32(vp)
            out.u8(sint)
        case .requestFailed(let request, let reason):
            out.u16(Kind.requestFailed.rawValue)
            out.u32(request)
            out.string(reason)
        case .shutdownGuest(let id):
            out.u16(Kind.shutdownGuest.rawValue)
            out.u32(id)
        case .portWrite(let id, let vp, let port, let size, let value):
            out.u16(Kind.portWrite.rawValue)
            out.u32(id)
            out.u32(vp)
            out.u16(port)
            out.u8(size)
            out.u32(value)
        case .portRead(let request, let id, let vp, let port, let size):
            out.u16(Kind.portRead.rawValue)
            out.u32(request)
            out.u32(id)
            out.u32(vp)
            out.u16(port)
            out.u8(size)
        case .interruptLine(let request, let id, let pin):
            out.u16(Kind.interruptLine.rawValue)
            out.u32(request)
            out.u32(id)
            out.u8(pin)
        case .deviceAdded(let id, let device):
            out.u16(Kind.deviceAdded.rawValue)
            out.u32(id)
            encode(device, into: &out)
        case .deviceRemoved(let id, let instance):
            out.u16(Kind.deviceRemoved.rawValue)
            out.u32(id)
            out.data(instance.wireBytes)
        case .deviceChanged(let id, let device):
            out.u16(Kind.deviceChanged.rawValue)
            out.u32(id)
            encode(device, into: &out)
        case .portReadString(let request, let id, let vp, let port, let size, let count):
            out.u16(Kind.portReadString.rawValue)
            out.u32(request)
            out.u32(id)
            out.u32(vp)
            out.u16(port)
            out.u8(size)
            out.u32(count)
        case .portWriteString(let id, let vp, let port, let size, let bytes):
            out.u16(Kind.portWriteString.rawValue)
            out.u32(id)
            out.u32(vp)
            out.u16(port)
            out.u8(size)
            out.data(bytes)
        case .switchAttached(let spec):
            out.u16(Kind.switchAttached.rawValue)
            spec.encode(into: &out)
        case .switchDetached(let name):
            out.u16(Kind.switchDetached.rawValue)
            out.string(name)
        case .requestStatistics(let request, let id):
            out.u16(Kind.requestStatistics.rawValue)
            out.u32(request)
            out.u32(id)
        case .savedState(let id, let records):
            out.u16(Kind.savedState.rawValue)
            out.u32(id)
            out.records(records)
        case .sequencedGuestMessage(let message):
            out.u16(Kind.sequencedGuestMessage.rawValue)
            out.u32(message.partitionID)
            out.u64(message.sequence)
            out.u32(message.vp)
            out.u32(message.connectionID)
            out.u32(message.messageType)
            out.data(message.payload)
        }
        return out.bytes
    }

    public init(parsing bytes: [UInt8]) throws(ControlProtocolError) {
        var input = WireDecoder(bytes)
        let kind = try input.header(Kind.self)
        switch kind {
        case .welcome:
            self = .welcome(rootProcessID: try input.u32())
        case .partitionAttached:
            let id = try input.u32()
            let name = try input.string()
            let memorySize = try input.u64()
            let processorCount = try input.u32()
            let clock = ReferenceClock(tscFrequencyHz: try input.u64(), scale: try input.u64(),
                                       guestTSCOffset: try input.u64(), referenceOffset: try input.i64())
            let pageCount = try input.u32()
            guard pageCount <= 1024 else { throw .truncated }
            var processors: [ProcessorPages] = []
            for _ in 0..<pageCount { processors.append(try decodePages(&input)) }
            let deviceCount = try input.u32()
            guard deviceCount <= UInt32(DeviceCatalog.maximumDevices) else { throw .truncated }
            var devices: [DeviceSpec] = []
            var resourceTotal = 0
            for _ in 0..<deviceCount {
                let device = try decodeDevice(&input)
                resourceTotal += device.resources.count
                guard resourceTotal <= DeviceCatalog.maximumResources else { throw .truncated }
                devices.append(device)
            }
            self = .partitionAttached(PartitionAttachment(
                partitionID: id, name: name, memorySize: memorySize, processorCount: processorCount, clock: clock,
                processors: processors, devices: devices))
        case .partitionDetached:
            self = .partitionDetached(partitionID: try input.u32())
        case .synicPagesChanged:
            self = .synicPagesChanged(partitionID: try input.u32(), try decodePages(&input))
        case .guestMessage:
            self = .guestMessage(partitionID: try input.u32(), vp: try input.u32(), connectionID: try input.u32(),
                                 messageType: try input.u32(), payload: try input.data(limit: SynIC.maximumMessagePayload))
        case .doorbell:
            self = .doorbell(requestID: try input.u32(), partitionID: try input.u32(), vp: try input.u32(), sint: try input.u8())
        case .requestFailed:
            self = .requestFailed(requestID: try input.u32(), reason: try input.string())
        case .shutdownGuest:
            self = .shutdownGuest(partitionID: try input.u32())
        case .portWrite:
            self = .portWrite(partitionID: try input.u32(), vp: try input.u32(), port: try input.u16(), size: try input.u8(),
                              value: try input.u32())
        case .portRead:
            self = .portRead(requestID: try input.u32(), partitionID: try input.u32(), vp: try input.u32(),
                             port: try input.u16(), size: try input.u8())
        case .interruptLine:
            self = .interruptLine(requestID: try input.u32(), partitionID: try input.u32(), pin: try input.u8())
        case .deviceAdded:
            self = .deviceAdded(partitionID: try input.u32(), try decodeDevice(&input))
        case .deviceRemoved:
            let id = try input.u32()
            guard let instance = GUID(wireBytes: try input.data(limit: GUID.size)) else { throw .truncated }
            self = .deviceRemoved(partitionID: id, instance: instance)
        case .deviceChanged:
            self = .deviceChanged(partitionID: try input.u32(), try decodeDevice(&input))
        case .portReadString:
            self = .portReadString(requestID: try input.u32(), partitionID: try input.u32(), vp: try input.u32(),
                                   port: try input.u16(), size: try input.u8(), count: try input.u32())
        case .portWriteString:
            self = .portWriteString(partitionID: try input.u32(), vp: try input.u32(), port: try input.u16(),
                                    size: try input.u8(), bytes: try input.data(limit: Self.maximumStringBytes))
        case .switchAttached:
            self = .switchAttached(try SwitchSpec(decoding: &input))
        case .switchDetached:
            self = .switchDetached(name: try input.string(limit: 64))
        case .requestStatistics:
            self = .requestStatistics(requestID: try input.u32(), partitionID: try input.u32())
        case .savedState:
            self = .savedState(partitionID: try input.u32(), records: try input.records(requiringBytes: true))
        case .sequencedGuestMessage:
            self = .sequencedGuestMessage(SequencedGuestMessage(
                partitionID: try input.u32(), sequence: try input.u64(), vp: try input.u32(), connectionID: try input.u32(),
                messageType: try input.u32(), payload: try input.data(limit: SynIC.maximumMessagePayload)))
        }
        guard input.isAtEnd else { throw .trailingBytes }
    }
}

/// Messages from the parent partition to the root scheduler.
public enum ParentMessage: Hashable, Sendable {
    /// Sent first on every connection.
    case hello(parentProcessID: UInt32)
    /// HvPostMessage to `connectionID` in the partition is delivered to the parent.
    case registerMessageConnection(partitionID: UInt32, connectionID: UInt32)
    case unregisterMessageConnection(partitionID: UInt32, connectionID: UInt32)
    /// HvSignalEvent on `connectionID` signals the eventfd sent as the one descriptor
    /// (registered as an ioeventfd: the signal never leaves the kernel).
    case registerEventConnection(partitionID: UInt32, connectionID: UInt32)
    case unregisterEventConnection(partitionID: UInt32, connectionID: UInt32)
    /// Asks for the eventfd that raises `sint` on processor `vp`; answered by `doorbell`.
    case requestDoorbell(requestID: UInt32, partitionID: UInt32, vp: UInt32, sint: UInt8)
    /// Posts a SynIC message to `sint` of processor `vp`.
    case postMessage(partitionID: UInt32, vp: UInt32, sint: UInt8, messageType: UInt32, payload: [UInt8])
    /// Facts about a partition the root shows users (e.g. "heartbeat.sequence": "12").
    case partitionStatus(partitionID: UInt32, facts: [String: String])
    /// Guest accesses to ports `base..<base+count` go to the parent (an emulated legacy device).
    /// `accessesPerSecond`: how fast the guest may access them (0: the root's default).
    case registerPorts(partitionID: UInt32, base: UInt16, count: UInt16, accessesPerSecond: UInt32 = 0)
    /// The value for a `portRead`.
    case portReadResult(requestID: UInt32, value: UInt32)
    /// Asks for an eventfd that raises IOAPIC pin `pin`; answered by `interruptLine`.
    case requestInterruptLine(requestID: UInt32, partitionID: UInt32, pin: UInt8)
    /// Bytes the guest wrote to its console (serial port), for the partition's console log.
    case consoleOutput(partitionID: UInt32, bytes: [UInt8])
    /// The bytes for a `portReadString`, in the order the elements were read.
    case portReadStringResult(requestID: UInt32, bytes: [UInt8])
    /// The answer to `requestStatistics`: the partition's channels and what each carried
    /// (at most `ChannelCounterRecord.limit`; none if the parent does not serve the partition).
    case partitionStatistics(requestID: UInt32, partitionID: UInt32, channels: [ChannelCounterRecord])
    /// A part of a state change with the SynIC messages it answers with (`StateCommit`).
    case commitState(StateCommit)
    /// The parent has handled the first `jobs` of the partition's messages that run on its control
    /// thread on this connection (which lets the root send more); the last guest message among
    /// them was numbered `sequence` (0: none yet).
    case completed(partitionID: UInt32, jobs: UInt64, sequence: UInt64)
    /// The parent has set up the partition it was handed: its devices are attached and their
    /// ports registered (both sent ahead of this in the partition's lane). The root starts a
    /// partition's processors only after this, so a guest's first port access finds its device.
    case partitionReady(partitionID: UInt32)

    enum Kind: UInt16 {
        case hello = 1, registerMessageConnection, unregisterMessageConnection, registerEventConnection,
             unregisterEventConnection, requestDoorbell, postMessage, partitionStatus, registerPorts, portReadResult,
             requestInterruptLine, consoleOutput, portReadStringResult, commitState, completed, partitionReady
        case partitionStatistics = 32
    }

    public var descriptorCount: Int {
        if case .registerEventConnection = self { return 1 }
        return 0
    }

    public var bytes: [UInt8] {
        var out = WireEncoder()
        out.u16(ControlProtocol.version)
        switch self {
        case .hello(let pid):
            out.u16(Kind.hello.rawValue)
            out.u32(pid)
        case .registerMessageConnection(let id, let connection):
            out.u16(Kind.registerMessageConnection.rawValue)
            out.u32(id)
            out.u32(connection)
        case .unregisterMessageConnection(let id, let connection):
            out.u16(Kind.unregisterMessageConnection.rawValue)
            out.u32(id)
            out.u32(connection)
        case .registerEventConnection(let id, let connection):
            out.u16(Kind.registerEventConnection.rawValue)
            out.u32(id)
            out.u32(connection)
        case .unregisterEventConnection(let id, let connection):
            out.u16(Kind.unregisterEventConnection.rawValue)
            out.u32(id)
            out.u32(connection)
        case .requestDoorbell(let request, let id, let vp, let sint):
            out.u16(Kind.requestDoorbell.rawValue)
            out.u32(request)
            out.u32(id)
            out.u32(vp)
            out.u8(sint)
        case .postMessage(let id, let vp, let sint, let type, let payload):
            out.u16(Kind.postMessage.rawValue)
            out.u32(id)
            out.u32(vp)
            out.u8(sint)
            out.u32(type)
            out.data(payload)
        case .partitionStatus(let id, let facts):
            out.u16(Kind.partitionStatus.rawValue)
            out.u32(id)
            out.u32(UInt32(facts.count))
            for (key, value) in facts.sorted(by: { $0.key < $1.key }) {
                out.string(key)
                out.string(value)
            }
        case .registerPorts(let id, let base, let count, let rate):
            out.u16(Kind.registerPorts.rawValue)
            out.u32(id)
            out.u16(base)
            out.u16(count)
            out.u32(rate)
        case .portReadResult(let request, let value):
            out.u16(Kind.portReadResult.rawValue)
            out.u32(request)
            out.u32(value)
        case .requestInterruptLine(let request, let id, let pin):
            out.u16(Kind.requestInterruptLine.rawValue)
            out.u32(request)
            out.u32(id)
            out.u8(pin)
        case .consoleOutput(let id, let bytes):
            out.u16(Kind.consoleOutput.rawValue)
            out.u32(id)
            out.data(bytes)
        case .portReadStringResult(let request, let bytes):
            out.u16(Kind.portReadStringResult.rawValue)
            out.u32(request)
            out.data(bytes)
        case .partitionStatistics(let request, let id, let channels):
            out.u16(Kind.partitionStatistics.rawValue)
            out.u32(request)
            out.u32(id)
            let kept = channels.prefix(ChannelCounterRecord.limit)
            out.u32(UInt32(kept.count))
            for channel in kept { channel.encode(into: &out) }
        case .commitState(let commit):
            out.u16(Kind.commitState.rawValue)
            out.u32(commit.partitionID)
            out.u64(commit.sequence)
            out.bool(commit.isFinal)
            out.records(commit.records)
            out.posts(commit.posts)
        case .completed(let id, let jobs, let sequence):
            out.u16(Kind.completed.rawValue)
            out.u32(id)
            out.u64(jobs)
            out.u64(sequence)
        case .partitionReady(let id):
            out.u16(Kind.partitionReady.rawValue)
            out.u32(id)
        }
        return out.bytes
    }

    public init(parsing bytes: [UInt8]) throws(ControlProtocolError) {
        var input = WireDecoder(bytes)
        let kind = try input.header(Kind.self)
        switch kind {
        case .hello:
            self = .hello(parentProcessID: try input.u32())
        case .registerMessageConnection:
            self = .registerMessageConnection(partitionID: try input.u32(), connectionID: try input.u32())
        case .unregisterMessageConnection:
            self = .unregisterMessageConnection(partitionID: try input.u32(), connectionID: try input.u32())
        case .registerEventConnection:
            self = .registerEventConnection(partitionID: try input.u32(), connectionID: try input.u32())
        case .unregisterEventConnection:
            self = .unregisterEventConnection(partitionID: try input.u32(), connectionID: try input.u32())
        case .requestDoorbell:
            self = .requestDoorbell(requestID: try input.u32(), partitionID: try input.u32(), vp: try input.u32(),
                                    sint: try input.u8())
        case .postMessage:
            self = .postMessage(partitionID: try input.u32(), vp: try input.u32(), sint: try input.u8(),
                                messageType: try input.u32(), payload: try input.data(limit: SynIC.maximumMessagePayload))
        case .partitionStatus:
            let id = try input.u32()
            let count = try input.u32()
            guard count <= 256 else { throw .truncated }
            var facts: [String: String] = [:]
            for _ in 0..<count {
                let key = try input.string(limit: 256)
                facts[key] = try input.string(limit: 4096)
            }
            self = .partitionStatus(partitionID: id, facts: facts)
        case .registerPorts:
            self = .registerPorts(partitionID: try input.u32(), base: try input.u16(), count: try input.u16(),
                                  accessesPerSecond: try input.u32())
        case .portReadResult:
            self = .portReadResult(requestID: try input.u32(), value: try input.u32())
        case .requestInterruptLine:
            self = .requestInterruptLine(requestID: try input.u32(), partitionID: try input.u32(), pin: try input.u8())
        case .consoleOutput:
            self = .consoleOutput(partitionID: try input.u32(), bytes: try input.data(limit: 1 << 16))
        case .portReadStringResult:
            self = .portReadStringResult(requestID: try input.u32(),
                                         bytes: try input.data(limit: RootMessage.maximumStringBytes))
        case .partitionStatistics:
            let request = try input.u32()
            let id = try input.u32()
            let count = try input.u32()
            guard count <= UInt32(ChannelCounterRecord.limit) else { throw .truncated }
            var channels: [ChannelCounterRecord] = []
            for _ in 0..<count { channels.append(try ChannelCounterRecord(decoding: &input)) }
            self = .partitionStatistics(requestID: request, partitionID: id, channels: channels)
        case .commitState:
            self = .commitState(StateCommit(partitionID: try input.u32(), sequence: try input.u64(), isFinal: try input.bool(),
                                            records: try input.records(requiringBytes: false), posts: try input.posts()))
        case .completed:
            self = .completed(partitionID: try input.u32(), jobs: try input.u64(), sequence: try input.u64())
        case .partitionReady:
            self = .partitionReady(partitionID: try input.u32())
        }
        guard input.isAtEnd else { throw .trailingBytes }
    }
}

private func encode(_ pages: ProcessorPages, into out: inout WireEncoder) {
    out.u32(pages.vp)
    out.bool(pages.synicEnabled)
    out.optionalU64(pages.messagePage)
    out.optionalU64(pages.eventFlagsPage)
}

/// A device: kind, instance, settings, then its resources (a tag, then each case's fields).
private func encode(_ device: DeviceSpec, into out: inout WireEncoder) {
    out.string(device.kind)
    out.data(device.instance.wireBytes)
    out.data(device.settings)
    out.u32(UInt32(device.resources.count))
    for resource in device.resources {
        switch resource {
        case .file(let path, let writable):
            out.u8(1)
            out.string(path)
            out.bool(writable)
        case .tap(let name):
            out.u8(2)
            out.string(name)
        }
    }
}

private func decodeDevice(_ input: inout WireDecoder) throws(ControlProtocolError) -> DeviceSpec {
    let kind = try input.string(limit: 64)
    guard let instance = GUID(wireBytes: try input.data(limit: GUID.size)) else { throw .truncated }
    let settings = try input.data(limit: DeviceCatalog.maximumSettingsBytes)
    let count = try input.u32()
    guard count <= UInt32(DeviceCatalog.maximumResources) else { throw .truncated }
    var resources: [HostResource] = []
    for _ in 0..<count {
        switch try input.u8() {
        case 1: resources.append(.file(path: try input.string(), writable: try input.bool()))
        case 2: resources.append(.tap(name: try input.string(limit: 16)))
        default: throw .truncated
        }
    }
    return DeviceSpec(kind: kind, instance: instance, settings: settings, resources: resources)
}

private func decodePages(_ input: inout WireDecoder) throws(ControlProtocolError) -> ProcessorPages {
    ProcessorPages(vp: try input.u32(), synicEnabled: try input.bool(), messagePage: try input.optionalU64(),
                   eventFlagsPage: try input.optionalU64())
}

/// A connected control channel: typed send and receive over a `SequencedPacketSocket`.
public final class ControlChannel: Sendable {
    public let socket: SequencedPacketSocket

    public init(socket: SequencedPacketSocket) {
        self.socket = socket
    }

    /// Sends a root message with its descriptors.
    /// - Parameter nonBlocking: fail (EAGAIN) rather than wait when the peer is not keeping up.
    public func send(_ message: RootMessage, descriptors: [Int32] = [], nonBlocking: Bool = false) throws(SystemError) {
        precondition(descriptors.count == message.descriptorCount, "\(message) needs \(message.descriptorCount) descriptors")
        try socket.send(message.bytes, descriptors: descriptors, nonBlocking: nonBlocking)
    }

    /// Sends a parent message with its descriptors.
    public func send(_ message: ParentMessage, descriptors: [Int32] = []) throws(SystemError) {
        precondition(descriptors.count == message.descriptorCount, "\(message) needs \(message.descriptorCount) descriptors")
        try socket.send(message.bytes, descriptors: descriptors)
    }

    /// The result of a receive: a message with its descriptors, or the end of the connection.
    public enum Received<Message> {
        case message(Message, [OwnedDescriptor])
        case closed
    }

    /// Receives the next root message (on the parent's side).
    public func receiveRootMessage() throws -> Received<RootMessage> {
        let (bytes, descriptors) = try socket.receive()
        if bytes.isEmpty && descriptors.isEmpty { return .closed }
        let message = try RootMessage(parsing: bytes)
        guard descriptors.count == message.descriptorCount else {
            throw ControlProtocolError.missingDescriptor("\(message)")
        }
        return .message(message, descriptors)
    }

    /// Receives the next parent message (on the root's side).
    public func receiveParentMessage() throws -> Received<ParentMessage> {
        let (bytes, descriptors) = try socket.receive()
        if bytes.isEmpty && descriptors.isEmpty { return .closed }
        let message = try ParentMessage(parsing: bytes)
        guard descriptors.count == message.descriptorCount else {
            throw ControlProtocolError.missingDescriptor("\(message)")
        }
        return .message(message, descriptors)
    }
}

extension WireDecoder {
    /// Reads the protocol version and message kind every control message starts with.
    mutating func header<Kind: RawRepresentable<UInt16>>(_: Kind.Type) throws(ControlProtocolError) -> Kind {
        let version = try u16()
        guard version == ControlProtocol.version else { throw .unsupportedVersion(version) }
        let raw = try u16()
        guard let kind = Kind(rawValue: raw) else { throw .unknownKind(raw) }
        return kind
    }
}
