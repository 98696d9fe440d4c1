import DeviceModel
import Foundation
import HypervisorInterface
import KVM
import LinuxSupport
import Logging
import ManagementAPI
import Partition
import Privilege
import Synchronization
import VMBusProtocol

/// The root scheduler: the only owner of /dev/kvm. It creates child partitions, runs and
/// stops their virtual processors, and hands their memory and SynIC plumbing to the parent
/// partition. It contains no device code.
public final class RootScheduler: Sendable {
    let system: KVMSystem
    let logger: Logger
    /// The device types partitions may use.
    let catalog: DeviceCatalog
    private let table = Mutex<[String: ManagedPartition]>([:])
    private let nextID = Atomic<UInt32>(1)
    /// The link to the parent partition (set once by `RootService`).
    let link = Mutex<ParentLink?>(nil)
    /// The virtual switches (VirtualSwitches.swift).
    let switchTable = SwitchTable()
    /// Each partition's processor reserve, limit, weight and pinning, in control groups.
    let processors: ProcessorControl
    /// The host's CPUID leaves and recent guest images, kept off each creation's path.
    let hostFacts = HostFacts()

    /// The most partitions this root keeps (`defaultPartitionLimit` unless a test says otherwise).
    let partitionLimit: Int

    /// Opens /dev/kvm and sets up processor controls (off unless `processorControls` enables
    /// them, so a scheduler made in a test leaves the host's control groups alone).
    public init(catalog: DeviceCatalog, logger: Logger,
                processorControls: ProcessorControlOptions = ProcessorControlOptions(enabled: false),
                partitionLimit: Int = RootScheduler.defaultPartitionLimit)
        throws(RootServiceError)
    {
        do throws(KVMError) {
            system = try KVMSystem()
        } catch {
            throw .kvm(error)
        }
        self.catalog = catalog
        self.logger = logger
        self.partitionLimit = partitionLimit
        do throws(RootError) {
            processors = try ProcessorControl(options: processorControls, logger: logger)
        } catch {
            throw .processorControls(error.description)
        }
    }

    var parentLink: ParentLink? { link.withLock { $0 } }

    // MARK: Queries

    /// Every partition, oldest first.
    public func list() -> [PartitionInfo] {
        table.withLock { Array($0.values) }.sorted { $0.partition.id < $1.partition.id }.map(info(of:))
    }

    /// One partition.
    public func info(_ name: String) throws(RootError) -> PartitionInfo {
        info(of: try managed(name))
    }

    func info(of entry: ManagedPartition) -> PartitionInfo {
        var info = entry.info
        info.cpu = entry.partition.state.isFinal ? nil : processors.controls(of: entry.partition.name)
        return info
    }

    /// The last `lines` console or debug-port lines of a partition.
    public func console(_ name: String, lines: Int) throws(RootError) -> [String] {
        Array(try managed(name).partition.console.snapshot.suffix(max(0, lines)))
    }

    /// Partitions that are still running or paused (attached to the parent).
    var livePartitions: [ManagedPartition] {
        table.withLock { Array($0.values) }.filter { !$0.partition.state.isFinal }.sorted { $0.partition.id < $1.partition.id }
    }

    func managed(_ name: String) throws(RootError) -> ManagedPartition {
        guard let entry = table.withLock({ $0[name] }) else { throw .notFound(name) }
        return entry
    }

    func managed(id: UInt32) -> ManagedPartition? {
        table.withLock { $0.values.first { $0.partition.id == id } }
    }

    // MARK: Lifecycle

    /// The most partitions (live or stopped, until deleted) the root keeps: each costs a virtual
    /// machine, threads and descriptors, and an API user must not exhaust them.
    public static let defaultPartitionLimit = 256

    /// The refusal of a partition past `partitionLimit`.
    private var partitionLimitReached: RootError {
        .limitReached("The root holds \(partitionLimit) partitions, its limit: delete stopped ones first "
                      + "(`hv partition delete NAME`).")
    }

    /// Creates a partition from a configuration whose guest image path has been resolved.
    /// - Parameter requester: who asked (the API's peer); files are read with that user's rights.
    ///   nil: the root itself.
    public func create(_ configuration: PartitionConfiguration, requester: UserIdentity? = nil) throws(RootError)
        -> PartitionInfo
    {
        guard table.withLock({ $0.count }) < partitionLimit else {
            logger.warning("refused partition \(configuration.name): the root holds \(partitionLimit) partitions")
            throw partitionLimitReached
        }
        let devices = try Self.validate(configuration, catalog: catalog)
        let image: BootImage
        switch configuration.guest {
        case .embedded(_, let arguments, let imagePath):
            guard let imagePath else {
                throw .invalidRequest("The guest image of \(configuration.name) was not built: create it with `hv partition create FILE`, which builds it.")
            }
            image = .embedded(elf: try hostFacts.image(at: imagePath, reader: requester?.uid, open: { path throws(RootError) in
                try HostFiles.open(path, as: requester, what: "Guest image", fix: "rebuild it with `hv partition create FILE`")
            }) { opened throws(RootError) in
                try HostFiles.read(opened, path: imagePath, what: "Guest image", limit: HostFiles.imageLimit)
            }, arguments: arguments)
        case .linux(let kernel, let initrd, let commandLine):
            let fix = "fix the path in the partition configuration"
            image = .linux(kernel: try HostFiles.read(kernel, as: requester, what: "Kernel", fix: fix, limit: HostFiles.imageLimit),
                           initrd: try initrd.map { path throws(RootError) in
                               // An initrd is loaded into the partition's RAM, so it cannot be larger.
                               try HostFiles.read(path, as: requester, what: "Initrd", fix: fix, limit: configuration.memoryMiB << 20)
                           },
                           commandLine: commandLine)
        }
        let specification = PartitionSpecification(
            name: configuration.name, processorCount: configuration.processors, memorySize: configuration.memoryMiB << 20,
            image: image, legacyPC: devices.contains { catalog.type(ofKind: $0.kind)?.requiresLegacyPC == true })
        guard table.withLock({ $0[configuration.name] == nil }) else { throw .nameTaken(configuration.name) }
        // Its reserve is checked against the others' and its group made before it exists; from
        // here on, a failure gives them back (a partition that stops does so itself).
        try processors.admit(name: configuration.name, processorCount: configuration.processors,
                             settings: configuration.cpu)
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        let partition: Partition
        do throws(PartitionError) {
            partition = try Partition.create(id: id, specification: specification, system: system, observer: self,
                                             cpuid: hostFacts.cpuid)
        } catch {
            processors.release(name: configuration.name)
            throw .partition(request: "Cannot create partition \(configuration.name)", error)
        }
        var attached: [ManagedPartition.AttachedDevice] = []
        do throws(RootError) {
            for device in devices {
                attached.append(.init(spec: device, resources: try HostResources.open(device.resources, as: requester)))
            }
        } catch {
            partition.stop(reason: "its devices' files cannot be opened")
            throw error
        }
        let entry = ManagedPartition(partition: partition, configuration: configuration, devices: attached, logger: logger)
        // Checked again where it is inserted: requests created at once all passed the check above.
        let inserted = table.withLock { partitions -> Bool? in
            guard partitions[configuration.name] == nil else { return false }
            guard partitions.count < partitionLimit else { return nil }
            partitions[configuration.name] = entry
            return true
        }
        guard inserted == true else {
            partition.stop(reason: inserted == nil ? "the partition limit" : "name conflict")
            guard inserted == nil else { throw .nameTaken(configuration.name) }
            throw partitionLimitReached
        }
        do throws(RootError) {
            try checkSwitches(of: devices, request: "Cannot create partition \(configuration.name)")
        } catch {
            table.withLock { _ = $0.removeValue(forKey: configuration.name) }
            partition.stop(reason: "its NICs' switches do not exist")
            throw error
        }
        logger.info("created partition \(configuration.name) (id \(id), \(configuration.processors) VP, \(configuration.memoryMiB) MiB)")
        parentLink?.attach(entry)
        return info(of: entry)
    }

    /// Changes a running (or created, or paused) partition's processor controls.
    public func setProcessorControls(_ change: ProcessorSettings, of name: String) throws(RootError) -> PartitionInfo {
        let entry = try managed(name)
        guard !change.isEmpty else {
            throw .invalidRequest("Name at least one of reserve, limit, weight and affinity to change.")
        }
        guard !entry.partition.state.isFinal else {
            throw .conflict("Partition \(name) is \(entry.partition.state.name), so its processor controls cannot change.")
        }
        try processors.change(name: name, to: change)
        logger.info("partition \(name): processor controls now \(processors.controls(of: name).map { "\($0)" } ?? "-")")
        return info(of: entry)
    }

    /// Starts, pauses, resumes, stops or shuts down a partition.
    public func perform(_ action: String, on name: String) throws(RootError) -> PartitionInfo {
        let entry = try managed(name)
        let partition = entry.partition
        let request = "Cannot \(action) \(name)"
        if action == "start", partition.state == .created { try awaitDevices(of: entry, request: request) }
        do throws(PartitionError) {
            switch action {
            case "start": try partition.start()
            case "pause": try partition.pause()
            case "resume": try partition.resume()
            case "stop":
                guard !partition.state.isFinal else {
                    throw PartitionError.invalidTransition(from: partition.state, operation: "stop")
                }
                partition.stop()
            case "shutdown":
                guard partition.state == .running else {
                    throw PartitionError.invalidTransition(from: partition.state, operation: "shut down")
                }
                guard entry.devices.contains(where: { $0.kind == "shutdown" }) else {
                    throw PartitionError.invalidSpecification(
                        "\(name) has no shutdown integration service; add \"shutdown\" to its devices or use `hv partition stop`")
                }
            default:
                throw PartitionError.invalidSpecification(
                    "unknown action \(action) (known: \(PartitionAction.known.joined(separator: ", ")))")
            }
        } catch {
            throw .partition(request: request, error)
        }
        if action == "shutdown" {
            do throws(ParentLinkError) {
                guard let link = parentLink else { throw .notConnected }
                try link.requestShutdown(partitionID: partition.id)
            } catch {
                throw .control(request: request, error)
            }
        }
        return info(of: entry)
    }

    /// How long a start waits for the parent to set up the partition's devices.
    static let deviceSetUpTimeout: UInt64 = 30_000_000_000

    /// Waits until the parent has set up `entry`'s devices (attached them and registered their
    /// ports), so the guest's first instruction finds them: a UART probed before its ports are
    /// registered reads as absent, and what the guest writes to it is lost. With no parent
    /// connected the partition starts at once; its devices come when a parent connects. A
    /// partition stopped meanwhile ends the wait (its start is then refused as such).
    private func awaitDevices(of entry: ManagedPartition, request: String) throws(RootError) {
        guard let link = parentLink else { return }
        let partition = entry.partition
        do throws(ParentLinkError) {
            _ = try link.waitUntilReady(partitionID: partition.id, timeoutNanoseconds: Self.deviceSetUpTimeout) {
                partition.state == .created
            }
        } catch .notConnected {
            logger.info("partition \(entry.configuration.name) starts with no parent partition connected; its devices come when one connects")
        } catch {
            throw .control(request: request, error)
        }
    }

    // MARK: Devices of a running partition

    /// Adds a device to partition `name` while it exists (created, running or paused); the parent
    /// offers it to the guest at once.
    ///
    /// The device's host files are opened, and any a change lets go of are closed, outside the
    /// partition's device lock, which every listing and the parent's hand-over take: opening or
    /// closing a file can last as long as the server behind it (NFS, FUSE) takes to answer. A
    /// change that finds the devices changed by another meanwhile is refused (`.conflict`).
    public func addDevice(_ device: DeviceConfiguration, to name: String, requester: UserIdentity? = nil) throws(RootError)
        -> PartitionInfo
    {
        let entry = try liveForDeviceChange(name, request: "add a device")
        let request = "Cannot add a \(device.kind) device to \(name)"
        let (before, spec) = try entry.attached.withLock { devices throws(RootError) -> ([DeviceSpec], DeviceSpec) in
            let specs = devices.map(\.spec)
            let spec: DeviceSpec
            do throws(DeviceError) {
                spec = try catalog.resolve(adding: device, to: specs, partition: name)
            } catch {
                throw .device(request: request, error)
            }
            try Self.checkHandOver(name: name, processors: entry.partition.processorCount, devices: specs + [spec])
            return (specs, spec)
        }
        let added = ManagedPartition.AttachedDevice(spec: spec, resources: try HostResources.open(spec.resources, as: requester))
        try entry.attached.withLock { devices throws(RootError) in
            // The partition may have stopped, or its devices changed, while the files opened.
            try Self.requireLive(entry, request: "add a device")
            guard devices.map(\.spec) == before else { throw Self.changedMeanwhile(request) }
            devices.append(added)
        }
        do throws(RootError) {
            try checkSwitches(of: [added.spec], request: request)
        } catch {
            let withdrawn = entry.attached.withLock { devices in
                defer { devices.removeAll { $0.spec.instance == added.spec.instance } }
                return devices.filter { $0.spec.instance == added.spec.instance }
            }
            _ = withdrawn  // Its files close here, after the lock.
            throw error
        }
        parentLink?.deviceAdded(partitionID: entry.partition.id, added.spec, resources: added.resources)
        logger.info("partition \(name): \(added.spec.kind) \(added.spec.instance) added")
        return entry.info
    }

    /// Removes the device `device` (its instance GUID, or its kind when the partition has one
    /// of that kind) from partition `name`; the guest sees it rescinded. Its host files close
    /// after the device lock is released (see `addDevice`).
    public func removeDevice(_ device: String, from name: String) throws(RootError) -> PartitionInfo {
        let entry = try liveForDeviceChange(name, request: "remove a device")
        let removed = try entry.attached.withLock { devices throws(RootError) -> ManagedPartition.AttachedDevice in
            let index = try Self.index(of: device, in: devices.map(\.spec), request: "Cannot remove \(device) from \(name)")
            let spec = devices[index].spec
            guard catalog.type(ofKind: spec.kind)?.hotPluggable == true else {
                throw .device(request: "Cannot remove \(device) from \(name)",
                              .notWhileRunning(kind: spec.kind, change: "removed"))
            }
            return devices.remove(at: index)
        }
        parentLink?.deviceRemoved(partitionID: entry.partition.id, instance: removed.spec.instance)
        logger.info("partition \(name): \(removed.spec.kind) \(removed.spec.instance) removed")
        return entry.info
    }

    /// Gives the device `device` of partition `name` new settings while it runs. Its new host
    /// files are opened, and the old ones closed, outside the device lock (see `addDevice`).
    public func changeDevice(_ device: String, of name: String, settings: [String: JSONValue],
                             requester: UserIdentity? = nil) throws(RootError) -> PartitionInfo
    {
        let entry = try liveForDeviceChange(name, request: "change a device")
        let request = "Cannot change \(device) of \(name)"
        let (before, index, spec) = try entry.attached.withLock { devices throws(RootError) -> ([DeviceSpec], Int, DeviceSpec) in
            let specs = devices.map(\.spec)
            let index = try Self.index(of: device, in: specs, request: request)
            let spec: DeviceSpec
            do throws(DeviceError) {
                spec = try catalog.resolve(changing: specs[index], to: settings, among: specs)
            } catch {
                throw .device(request: request, error)
            }
            var after = specs
            after[index] = spec
            try Self.checkHandOver(name: name, processors: entry.partition.processorCount, devices: after)
            return (specs, index, spec)
        }
        let changed = ManagedPartition.AttachedDevice(spec: spec, resources: try HostResources.open(spec.resources, as: requester))
        let replaced = try entry.attached.withLock { devices throws(RootError) -> ManagedPartition.AttachedDevice in
            try Self.requireLive(entry, request: "change a device")
            guard devices.map(\.spec) == before else { throw Self.changedMeanwhile(request) }
            defer { devices[index] = changed }
            return devices[index]
        }
        _ = replaced  // Its files close here, after the lock.
        parentLink?.deviceChanged(partitionID: entry.partition.id, changed.spec, resources: changed.resources)
        logger.info("partition \(name): \(changed.spec.kind) \(changed.spec.instance) changed")
        return entry.info
    }

    /// The refusal of a device change that found the partition's devices changed by another
    /// while it opened its files.
    private static func changedMeanwhile(_ request: String) -> RootError {
        .conflict("\(request): its devices changed while this request opened its files; try again.")
    }

    /// A partition whose devices may change: it exists and has not stopped.
    private func live(_ name: String, request: String) throws(RootError) -> ManagedPartition {
        let entry = try managed(name)
        try Self.requireLive(entry, request: request)
        return entry
    }

    /// `live`, and refuses a device change while the parent has not taken as many of the
    /// partition's messages (or bytes) as its lane holds (`ParentLink.keepsUp`): device changes
    /// are queued for the parent whatever the room, since a change once made must reach it, so
    /// without this a user could queue them, while the parent is stuck on that partition, until
    /// the root gave the parent up (`ControlOutbox.Limits.hardLimitFactor`).
    private func liveForDeviceChange(_ name: String, request: String) throws(RootError) -> ManagedPartition {
        let entry = try live(name, request: request)
        if let parentLink, !parentLink.keepsUp(partitionID: entry.partition.id) {
            throw .busy("The parent partition has not yet taken the changes already made to \(name)'s devices: "
                        + "send this one again when it has.")
        }
        return entry
    }

    /// Refuses `request` on a partition that has stopped.
    private static func requireLive(_ entry: ManagedPartition, request: String) throws(RootError) {
        guard !entry.partition.state.isFinal else {
            throw .partition(request: "Cannot \(request) to \(entry.partition.name)",
                             .invalidTransition(from: entry.partition.state, operation: request))
        }
    }

    /// The device named by its instance GUID, or by its kind when just one device has that kind.
    private static func index(of device: String, in devices: [DeviceSpec], request: String) throws(RootError) -> Int {
        if let guid = GUID(device), let index = devices.firstIndex(where: { $0.instance == guid }) { return index }
        let ofKind = devices.indices.filter { devices[$0].kind == device }
        if ofKind.count == 1 { return ofKind[0] }
        if ofKind.count > 1 {
            throw .invalidRequest("\(request): the partition has \(ofKind.count) \(device) devices; name one by its instance GUID.")
        }
        throw .device(request: request, .noSuchDevice(device))
    }

    /// Stops a partition if needed and forgets it.
    public func delete(_ name: String) throws(RootError) {
        let entry = try managed(name)
        entry.partition.stop(reason: "deleted")
        table.withLock { _ = $0.removeValue(forKey: name) }
        logger.info("deleted partition \(name)")
    }

    /// Stops every partition (root shutdown).
    public func stopAll() {
        for entry in table.withLock({ Array($0.values) }) {
            entry.partition.stop(reason: "root scheduler shutting down")
        }
        // The switches go: external switches' rules come off their uplinks, and their TAPs go
        // when the root exits.
        let switches = switchTable.switches.withLock { table in
            defer { table.removeAll() }
            return Array(table.values)
        }
        for managed in switches { removeHostSide(of: managed) }
    }
}

extension RootScheduler: PartitionObserver {
    public func partition(_ partition: Partition, didChangeState state: PartitionState) {
        logger.info("partition \(partition.name) is \(state)")
        guard state.isFinal else { return }
        parentLink?.detach(partitionID: partition.id)
        // Its threads have ended: its group goes, and its reserve is given back.
        let usage = processors.release(name: partition.name)
        managed(id: partition.id)?.recordFinalUsage(usage)
        // What the partition's threads and tables allocated is free now: hand it back.
        ProcessMemory.returnFreePages()
    }

    public func partition(_ partition: Partition, processor vp: Int, startedOnThread threadID: Int32) {
        processors.attach(thread: threadID, to: partition.name)
    }

    public func partitionNeedsTeardown(_ partition: Partition) {
        // The calling processor thread cannot join itself.
        do throws(SystemError) {
            try OSThread.spawn(name: "teardown") { partition.finishStopping() }.detach()
        } catch {
            logger.error("partition \(partition.name) stays half-stopped until it is deleted: \(error)")
        }
    }

    public func partition(_ partition: Partition, consoleLine line: String) {
        guard let entry = managed(id: partition.id) else {
            logger.info("[\(partition.name)] \(line)")
            return
        }
        for logged in entry.consoleLog.admit([line]) { logger.info("[\(partition.name)] \(logged)") }
    }

    public func partition(_ partition: Partition, processor vp: UInt32, synicPagesChanged pages: SynICPages) {
        parentLink?.synicPagesChanged(partitionID: partition.id, vp: vp, pages: pages)
    }
}
