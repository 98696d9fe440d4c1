import ControlGroups
import ControlProtocol
import Glibc
import LinuxSupport
import ManagementAPI
import Partition

extension RootScheduler {
    /// What partition `name` has consumed (`GET /v1/partitions/{name}/stats`): processor time in
    /// all and per virtual processor, exits by reason, SynIC traffic, guest memory touched, and
    /// each channel's traffic as the parent counted it (asked for over the parent link, with a
    /// deadline; without an answer the rest is still returned, saying why the channels are missing).
    public func statistics(_ name: String) throws(RootError) -> PartitionStatistics {
        let entry = try managed(name)
        let partition = entry.partition
        let state = partition.state

        var processorStatistics: [ProcessorStatistics] = []
        var exits: [String: UInt64] = [:]
        for accounting in partition.accounting {
            let threadID = accounting.threadID
            let cpu = threadID.flatMap { try? ThreadCPUTime.nanoseconds(thread: $0) } ?? accounting.finalCPUNanoseconds ?? 0
            let processorExits = accounting.exits.snapshot
            exits.merge(processorExits, uniquingKeysWith: &+)
            processorStatistics.append(ProcessorStatistics(vp: accounting.vp, threadID: threadID, cpuNanoseconds: cpu,
                                                           exits: processorExits))
        }
        let threadTotal = processorStatistics.reduce(0) { $0 &+ $1.cpuNanoseconds }
        let group = state.isFinal ? nil : processors.group(of: name)
        let total: UInt64
        let source: String
        if let usage = group?.usage ?? entry.finalCPUUsage {
            (total, source) = (usage, "cgroup")
        } else {
            (total, source) = (threadTotal, "threads")
        }
        let controls = processors.controls(of: name)
            ?? ProcessorControlsInfo(reserve: 0, limit: 100, weight: 100, affinity: nil, enforced: false)

        let synic = partition.synicCounters
        var channels: [ChannelStatistics] = []
        var unavailable: String?
        if state.isFinal {
            unavailable = "the partition is \(state.name)"
        } else if let link = parentLink {
            do throws(ParentLinkError) {
                channels = try link.channelStatistics(partitionID: partition.id).map(Self.channel)
            } catch {
                unavailable = "\(error)"
            }
        } else {
            unavailable = "\(ParentLinkError.notConnected)"
        }
        return PartitionStatistics(
            id: partition.id, name: name, state: state.name, createdAtNanoseconds: partition.createdAt,
            sampledAtNanoseconds: MonotonicClock.nanoseconds(),
            cpu: CPUStatistics(totalNanoseconds: total, source: source, processors: processorStatistics, controls: controls,
                               controlGroups: group?.directories ?? []),
            exits: exits,
            synic: SynICStatistics(messagesPosted: synic.postedMessages, messagesDelivered: synic.deliveredMessages,
                                   eventsSignalled: synic.signalledEvents, hypercalls: synic.slowHypercalls),
            memory: MemoryStatistics(assignedBytes: UInt64(partition.memorySize),
                                     touchedBytes: partition.memory.map { Self.allocatedBytes(of: $0.file.rawValue) } ?? 0),
            channels: channels, channelsUnavailable: unavailable)
    }

    static func channel(_ record: ChannelCounterRecord) -> ChannelStatistics {
        ChannelStatistics(
            relID: record.relID, subChannel: record.subChannelIndex, device: record.device, open: record.isOpen,
            guestToHost: ChannelDirection(packets: record.packetsIn, bytes: record.bytesIn, signals: record.signalsIn),
            hostToGuest: ChannelDirection(packets: record.packetsOut, bytes: record.bytesOut, signals: record.signalsOut))
    }

    /// Bytes of a memfd that have pages behind them (st_blocks counts 512-byte units): the
    /// guest RAM that was ever touched, by the guest, the root or the parent.
    static func allocatedBytes(of descriptor: Int32) -> UInt64 {
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_blocks > 0 else { return 0 }
        return UInt64(status.st_blocks) * 512
    }
}
