import ControlProtocol
import DeviceHost
import DeviceModel
import GuestMemory
import HyperV
import LinuxSupport
import Logging
import Synchronization
import VMBusHost
import VMBusProtocol

/// The parent's view of one child partition: its mapped RAM, its processors' SynIC pages,
/// the doorbells that interrupt it, and the services (VMBus, devices, diagnostics) that serve it.
///
/// Everything the guest asks of the parent — its VMBus messages, its port accesses — runs on
/// the partition's own control thread (`control`), in order, so a slow or misbehaving child
/// delays only itself and never the parent's connection to the root.
public final class ChildPartition: Sendable {
    public let id: UInt32
    public let name: String
    public let memory: GuestMemory
    public let clock: ReferenceClock
    public let processorCount: UInt32
    /// The devices the root resolved for this partition when it attached it.
    public let devices: [DeviceSpec]
    /// The device types this parent can build.
    let deviceTypes: [any ParentDevice.Type]
    /// The devices built, by instance; used on the control thread only.
    let built = Mutex<[GUID: BuiltDevice]>([:])
    /// The partition's VMBus service, once attached.
    let vmbus = Mutex<VMBusService?>(nil)
    let root: RootConnection
    public let logger: Logger
    private let pages: Mutex<[UInt32: ProcessorPages]>
    private let doorbells = Mutex<[DoorbellKey: Doorbell]>([:])
    private let services = Mutex<[any PartitionService]>([])
    /// The partition's control thread.
    let control: WorkQueue
    /// Jobs refused because the control queue was full, for rate-limited logging.
    private let overflows = Atomic<UInt64>(0)
    /// The counters of every channel opened so far, by relid (a reopened relid replaces its entry).
    private let channelCounters = Mutex<[UInt32: ChannelRecord]>([:])

    /// A channel as the partition's statistics show it.
    struct ChannelRecord {
        var device: String
        var subChannelIndex: UInt16
        var counters: ChannelCounters
        var isOpen: Bool
    }
    /// The root's jobs for this partition on this connection, counted (ChildPartition+RootJobs).
    let rootJobs: Mutex<RootJobs>
    /// The state an earlier parent committed for this partition, by record key (empty: none).
    let savedState: [UInt64: [UInt8]]

    /// The most requests a child may have waiting for its control thread.
    static let controlQueueCapacity = 4096

    struct DoorbellKey: Hashable {
        var vp: UInt32
        var sint: UInt8
    }

    /// A doorbell eventfd, or the rings that arrived before it did.
    enum Doorbell {
        case pending(ringAfterArrival: Bool)
        case ready(EventFD)
    }

    /// Back ends the parent shares among its children (the virtual switches).
    let backends: SharedBackends

    /// - Parameters:
    ///   - savedState: what an earlier parent committed for the partition, by record key.
    ///   - jobs: the root's jobs already counted for the partition on this connection (when it is
    ///     attached a second time).
    init(attachment: PartitionAttachment, memory: GuestMemory, root: RootConnection,
         deviceTypes: [any ParentDevice.Type], backends: SharedBackends = SharedBackends(), logger: Logger,
         savedState: [UInt64: [UInt8]] = [:], jobs: RootJobs = RootJobs()) throws(SystemError) {
        self.deviceTypes = deviceTypes
        self.backends = backends
        self.savedState = savedState
        rootJobs = Mutex(jobs)
        control = try WorkQueue(name: "child\(attachment.partitionID)", capacity: Self.controlQueueCapacity)
        id = attachment.partitionID
        name = attachment.name
        self.memory = memory
        clock = attachment.clock
        processorCount = attachment.processorCount
        devices = attachment.devices
        self.root = root
        self.logger = logger
        pages = Mutex(Dictionary(uniqueKeysWithValues: attachment.processors.map { ($0.vp, $0) }))
    }

    /// Partition reference time now (100 ns units), from the host TSC.
    public func referenceTime() -> UInt64 { clock.referenceTime(hostTSC: TimestampCounter.read()) }

    func updatePages(_ new: ProcessorPages) {
        guard new.vp < processorCount else { return }
        pages.withLock { $0[new.vp] = new }
    }

    /// The SynIC pages of processor `vp`.
    public func processorPages(_ vp: UInt32) -> ProcessorPages? { pages.withLock { $0[vp] } }

    // MARK: Signalling the guest

    /// Requests the doorbells for `sint` on every processor (asynchronously).
    func prepareDoorbells(sint: UInt8) {
        for vp in 0..<processorCount { prepareDoorbell(vp: vp, sint: sint) }
    }

    func prepareDoorbell(vp: UInt32, sint: UInt8) {
        let key = DoorbellKey(vp: vp, sint: sint)
        let isNew = doorbells.withLock { table -> Bool in
            guard table[key] == nil else { return false }
            table[key] = .pending(ringAfterArrival: false)
            return true
        }
        guard isNew else { return }
        root.requestDoorbell(partitionID: id, vp: vp, sint: sint) { [self] event in
            let ring = doorbells.withLock { table -> Bool in
                guard let event else {
                    table[key] = nil
                    return false
                }
                let wanted = if case .pending(true) = table[key] { true } else { false }
                table[key] = .ready(event)
                return wanted
            }
            if ring { event?.signal() }
        }
    }

    /// Raises `sint` on `vp`: rings its doorbell (an irqfd in the root's VM, so the root is not
    /// on the path). A ring before the doorbell has arrived is replayed on arrival.
    public func raise(vp: UInt32, sint: UInt8) {
        let key = DoorbellKey(vp: vp, sint: sint)
        let event = doorbells.withLock { table -> EventFD? in
            switch table[key] {
            case .ready(let event): return event
            case .pending: table[key] = .pending(ringAfterArrival: true); return nil
            case nil: return nil
            }
        }
        if let event {
            event.signal()
        } else if doorbells.withLock({ $0[key] == nil }) {
            prepareDoorbell(vp: vp, sint: sint)
            raise(vp: vp, sint: sint)
        }
    }

    /// Sets event flag `flag` of `sint` on `vp` with an atomic OR (the guest clears flags with
    /// `lock btr`), then raises the SINT (Docs/hyperv-interface.md §4.4).
    /// - Returns: `false` if the processor has no event-flags page enabled (the event is lost,
    ///   as on Hyper-V).
    @discardableResult
    public func signalEvent(vp: UInt32, sint: UInt8, flag: UInt32) -> Bool {
        guard Int(sint) < SynIC.sintCount, flag < UInt32(SynIC.eventFlagsBlockSize * 8),
              let page = processorPages(vp)?.eventFlagsPage else { return false }
        // The page's address comes from the root: one at the top of the address space neither
        // traps nor wraps round to low memory.
        let (address, wrapped) = page.addingReportingOverflow(UInt64(SynIC.eventFlagsOffset(sint: Int(sint))) + UInt64(flag / 64) * 8)
        guard !wrapped else { return false }
        let word = GuestPhysicalAddress(address)
        do throws(GuestMemoryError) {
            try memory.atomicOr(UInt64(1) << UInt64(flag % 64), at: word, ordering: .sequentiallyConsistent)
        } catch {
            return false
        }
        raise(vp: vp, sint: sint)
        return true
    }

    /// Posts a SynIC message to `sint` of `vp` (through the root, which owns the message slots).
    public func postMessage(vp: UInt32, sint: UInt8, type: SynICMessageType, payload: [UInt8]) {
        root.postMessage(partitionID: id, vp: vp, sint: sint, type: type.rawValue, payload: payload)
    }

    // MARK: Statistics

    /// Records a channel that was just opened.
    func channelOpened(relID: UInt32, device: String, subChannelIndex: UInt16, counters: ChannelCounters) {
        channelCounters.withLock { table in
            guard table[relID] != nil || table.count < ChannelCounterRecord.limit else { return }
            table[relID] = ChannelRecord(device: device, subChannelIndex: subChannelIndex, counters: counters, isOpen: true)
        }
    }

    func channelClosed(relID: UInt32) {
        channelCounters.withLock { $0[relID]?.isOpen = false }
    }

    /// Every channel's counters, by relid.
    var channelStatistics: [ChannelCounterRecord] {
        channelCounters.withLock { $0 }.sorted { $0.key < $1.key }.map { relID, record in
            let counts = record.counters.snapshot
            return ChannelCounterRecord(
                relID: relID, subChannelIndex: record.subChannelIndex, device: record.device, isOpen: record.isOpen,
                packetsIn: counts.packetsIn, bytesIn: counts.bytesIn, signalsIn: counts.signalsIn,
                packetsOut: counts.packetsOut, bytesOut: counts.bytesOut, signalsOut: counts.signalsOut)
        }
    }

    // MARK: Services

    /// Runs `job` on the partition's control thread. Returns `false` (and logs, rate-limited)
    /// when the partition already has `controlQueueCapacity` requests waiting.
    @discardableResult
    func perform(_ job: @escaping @Sendable () -> Void) -> Bool {
        if control.enqueue(job) { return true }
        let count = overflows.wrappingAdd(1, ordering: .relaxed).newValue
        if count.nonzeroBitCount == 1 {
            logger.warning("partition \(name): \(count) requests dropped, its control queue is full")
        }
        return false
    }

    func add(_ service: any PartitionService) {
        services.withLock { $0.append(service) }
    }

    /// Dispatches a guest message (numbered `sequence` by the root, 0 if not) to the service
    /// that owns `connectionID`.
    func deliver(vp: UInt32, connectionID: UInt32, type: UInt32, payload: [UInt8], sequence: UInt64 = 0) {
        let owner = services.withLock { $0.first { $0.messageConnections.contains(connectionID) } }
        owner?.receive(vp: vp, connectionID: connectionID, type: SynICMessageType(rawValue: type), payload: payload,
                       sequence: sequence)
    }

    /// An intercepted port write (posted by the root).
    func portWrite(vp: UInt32, port: UInt16, size: Int, value: UInt32) {
        portOwner(port)?.portWrite(port: port, size: size, value: value)
    }

    /// An intercepted port read; the guest processor waits for the answer.
    func portRead(vp: UInt32, port: UInt16, size: Int) -> UInt32 {
        portOwner(port)?.portRead(port: port, size: size) ?? 0xFFFF_FFFF
    }

    /// An intercepted string read (REP INS); the guest processor waits for the bytes.
    func portReadString(vp: UInt32, port: UInt16, size: Int, count: Int) -> [UInt8] {
        guard (size == 1 || size == 2 || size == 4), count > 0 else { return [] }
        guard let owner = portOwner(port) else { return [UInt8](repeating: 0xFF, count: size * count) }
        return owner.portReadString(port: port, size: size, count: count)
    }

    /// An intercepted string write (REP OUTS), posted by the root.
    func portWriteString(vp: UInt32, port: UInt16, size: Int, bytes: [UInt8]) {
        guard size == 1 || size == 2 || size == 4 else { return }
        portOwner(port)?.portWriteString(port: port, size: size, bytes: bytes)
    }

    private func portOwner(_ port: UInt16) -> (any PartitionService)? {
        services.withLock { $0.first { $0.ports.contains { $0.contains(port) } } }
    }

    func requestGuestShutdown() {
        for service in services.withLock({ $0 }) { service.requestGuestShutdown() }
    }

    /// Stops every service on the control thread (after the requests already queued), then the
    /// thread itself. Blocks until done: call it from a thread of its own.
    func detach() {
        control.enqueue { [self] in
            let all = services.withLock { list -> [any PartitionService] in
                defer { list.removeAll() }
                return list
            }
            for service in all { service.stop() }
        }
        control.stop()
    }
}

/// Something the parent runs for a child partition.
protocol PartitionService: Sendable {
    /// The message connections it owns.
    var messageConnections: [UInt32] { get }
    /// The I/O ports it emulates.
    var ports: [Range<UInt16>] { get }
    func portWrite(port: UInt16, size: Int, value: UInt32)
    func portRead(port: UInt16, size: Int) -> UInt32
    func portReadString(port: UInt16, size: Int, count: Int) -> [UInt8]
    func portWriteString(port: UInt16, size: Int, bytes: [UInt8])
    /// A message the guest posted to one of them.
    func receive(vp: UInt32, connectionID: UInt32, type: SynICMessageType, payload: [UInt8])
    /// A message the guest posted to one of them, numbered `sequence` by the root: a service
    /// that commits state (`RootConnection.commit`) names it in the commit that handles it.
    func receive(vp: UInt32, connectionID: UInt32, type: SynICMessageType, payload: [UInt8], sequence: UInt64)
    /// A user asked for an orderly shutdown.
    func requestGuestShutdown()
    /// Releases threads and registrations.
    func stop()
}

extension PartitionService {
    var messageConnections: [UInt32] { [] }
    var ports: [Range<UInt16>] { [] }
    func portWrite(port: UInt16, size: Int, value: UInt32) {}
    func portRead(port: UInt16, size: Int) -> UInt32 { 0xFFFF_FFFF }
    func portReadString(port: UInt16, size: Int, count: Int) -> [UInt8] { [UInt8](repeating: 0xFF, count: size * count) }
    func portWriteString(port: UInt16, size: Int, bytes: [UInt8]) {}
    func receive(vp: UInt32, connectionID: UInt32, type: SynICMessageType, payload: [UInt8]) {}
    func receive(vp: UInt32, connectionID: UInt32, type: SynICMessageType, payload: [UInt8], sequence: UInt64) {
        receive(vp: vp, connectionID: connectionID, type: type, payload: payload)
    }
    func requestGuestShutdown() {}
}
