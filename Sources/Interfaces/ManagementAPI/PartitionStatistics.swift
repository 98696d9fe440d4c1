/// What `GET /v1/partitions/{name}/stats` returns: what one partition has consumed (the
/// counterpart of Hyper-V's `Measure-VM` and libvirt's `virsh domstats`). Counters count from
/// the partition's creation; a client takes two samples for rates.
public struct PartitionStatistics: Codable, Sendable, Equatable {
    public var id: UInt32
    public var name: String
    public var state: String
    /// When the partition was created and when this sample was taken, in CLOCK_MONOTONIC
    /// nanoseconds (the clock every process of the host shares), so a client can place the
    /// guest's reference time (zero at creation) on its own clock.
    public var createdAtNanoseconds: UInt64
    public var sampledAtNanoseconds: UInt64
    public var cpu: CPUStatistics
    public var exits: [String: UInt64]
    public var synic: SynICStatistics
    public var memory: MemoryStatistics
    /// Each VMBus channel the parent partition serves (empty while no parent is connected).
    public var channels: [ChannelStatistics]
    /// Why the channel counters are missing, when they are (no parent, no answer in time).
    public var channelsUnavailable: String?

    public init(id: UInt32, name: String, state: String, createdAtNanoseconds: UInt64, sampledAtNanoseconds: UInt64,
                cpu: CPUStatistics, exits: [String: UInt64], synic: SynICStatistics, memory: MemoryStatistics,
                channels: [ChannelStatistics], channelsUnavailable: String?) {
        self.id = id
        self.name = name
        self.state = state
        self.createdAtNanoseconds = createdAtNanoseconds
        self.sampledAtNanoseconds = sampledAtNanoseconds
        self.cpu = cpu
        self.exits = exits
        self.synic = synic
        self.memory = memory
        self.channels = channels
        self.channelsUnavailable = channelsUnavailable
    }
}

/// Processor time of a partition.
public struct CPUStatistics: Codable, Sendable, Equatable {
    /// Nanoseconds its virtual processors have run, in all.
    public var totalNanoseconds: UInt64
    /// Where the total comes from: "cgroup" (the partition's group's usage) or "threads" (the
    /// sum over its processor threads).
    public var source: String
    public var processors: [ProcessorStatistics]
    public var controls: ProcessorControlsInfo
    /// The partition's control-group directories, one per hierarchy (empty when uncontrolled).
    public var controlGroups: [String]

    public init(totalNanoseconds: UInt64, source: String, processors: [ProcessorStatistics],
                controls: ProcessorControlsInfo, controlGroups: [String]) {
        self.totalNanoseconds = totalNanoseconds
        self.source = source
        self.processors = processors
        self.controls = controls
        self.controlGroups = controlGroups
    }
}

/// One virtual processor.
public struct ProcessorStatistics: Codable, Sendable, Equatable {
    public var vp: Int
    /// The kernel thread id of its thread while it runs.
    public var threadID: Int32?
    /// Nanoseconds its thread has run.
    public var cpuNanoseconds: UInt64
    /// Exits to the root by reason.
    public var exits: [String: UInt64]

    public init(vp: Int, threadID: Int32?, cpuNanoseconds: UInt64, exits: [String: UInt64]) {
        self.vp = vp
        self.threadID = threadID
        self.cpuNanoseconds = cpuNanoseconds
        self.exits = exits
    }
}

/// The SynIC traffic the root sees (Docs/hyperv-interface.md §3-§4). Events a guest signals
/// through an ioeventfd never reach the root; the parent counts them per channel.
public struct SynICStatistics: Codable, Sendable, Equatable {
    /// HvPostMessage calls the root accepted.
    public var messagesPosted: UInt64
    /// Messages written into the guest's message slots.
    public var messagesDelivered: UInt64
    /// HvSignalEvent calls that exited to the root (slow path, or no ioeventfd matched).
    public var eventsSignalled: UInt64
    /// Slow-path hypercalls of every kind.
    public var hypercalls: UInt64

    public init(messagesPosted: UInt64, messagesDelivered: UInt64, eventsSignalled: UInt64, hypercalls: UInt64) {
        self.messagesPosted = messagesPosted
        self.messagesDelivered = messagesDelivered
        self.eventsSignalled = eventsSignalled
        self.hypercalls = hypercalls
    }
}

/// Guest memory.
public struct MemoryStatistics: Codable, Sendable, Equatable {
    /// The partition's RAM.
    public var assignedBytes: UInt64
    /// Bytes of it ever written or read (the memfd's allocated pages); 0 once it stopped.
    public var touchedBytes: UInt64

    public init(assignedBytes: UInt64, touchedBytes: UInt64) {
        self.assignedBytes = assignedBytes
        self.touchedBytes = touchedBytes
    }
}

/// One VMBus channel, as its worker in the parent counted it.
public struct ChannelStatistics: Codable, Sendable, Equatable {
    public var relID: UInt32
    public var subChannel: UInt16
    /// The device kind that serves it (heartbeat, bench, …).
    public var device: String
    public var open: Bool
    public var guestToHost: ChannelDirection
    public var hostToGuest: ChannelDirection

    public init(relID: UInt32, subChannel: UInt16, device: String, open: Bool, guestToHost: ChannelDirection,
                hostToGuest: ChannelDirection) {
        self.relID = relID
        self.subChannel = subChannel
        self.device = device
        self.open = open
        self.guestToHost = guestToHost
        self.hostToGuest = hostToGuest
    }
}

/// Traffic in one direction of a channel.
public struct ChannelDirection: Codable, Sendable, Equatable {
    public var packets: UInt64
    /// Bytes of ring space the packets took (descriptor, payload, padding, trailer).
    public var bytes: UInt64
    /// Signals that carried them: guest HvSignalEvents the worker woke for, or host signals
    /// (event flag and SINT) to the guest.
    public var signals: UInt64

    public init(packets: UInt64, bytes: UInt64, signals: UInt64) {
        self.packets = packets
        self.bytes = bytes
        self.signals = signals
    }
}
