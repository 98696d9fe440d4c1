import DeviceModel
import Foundation
import HypervisorInterface
import KVM
import LinuxSupport
import Logging
import ManagementAPI
import Partition
import Synchronization

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
    /// Each partition's processor reserve, limit, weight and pinning, in control groups.
    let processors: ProcessorControl
    /// The host's CPUID leaves and recent guest images, kept off each creation's path.
    let hostFacts = HostFacts()

    /// Opens /dev/kvm and sets up processor controls (off unless `processorControls` enables
    /// them, so a scheduler made in a test leaves the host's control groups alone).
    public init(catalog: DeviceCatalog, logger: Logger,
                processorControls: ProcessorControlOptions = ProcessorControlOptions(enabled: false))
        throws(RootServiceError)
    {
        do throws(KVMError) {
            system = try KVMSystem()
        } catch {
            throw .kvm(error)
        }
        self.catalog = catalog
        self.logger = logger
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

    /// Creates a partition from a configuration whose guest image path has been resolved.
    public func create(_ configuration: PartitionConfiguration) throws(RootError) -> PartitionInfo {
        if let problem = configuration.problem(catalog: catalog) {
            throw .invalidRequest("Invalid partition configuration: \(problem).")
        }
        let devices: [DeviceSpec]
        do throws(DeviceError) {
            devices = try configuration.resolvedDevices(catalog: catalog)
        } catch {
            throw .invalidRequest("Invalid partition configuration: \(error).")
        }
        let image: BootImage
        switch configuration.guest {
        case .embedded(_, let arguments, let imagePath):
            guard let imagePath else {
                throw .invalidRequest("The guest image of \(configuration.name) was not built: create it with `hv partition create FILE`, which builds it.")
            }
            image = .embedded(elf: try hostFacts.image(at: imagePath) { path throws(RootError) in
                try Self.read(path, what: "Guest image", fix: "rebuild it with `hv partition create FILE`")
            }, arguments: arguments)
        case .linux(let kernel, let initrd, let commandLine):
            let fix = "fix the path in the partition configuration"
            image = .linux(kernel: try Self.read(kernel, what: "Kernel", fix: fix),
                           initrd: try initrd.map { path throws(RootError) in try Self.read(path, what: "Initrd", fix: fix) },
                           commandLine: commandLine)
        }
        let specification = PartitionSpecification(
            name: configuration.name, processorCount: configuration.processors, memorySize: configuration.memoryMiB << 20,
            image: image)
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
        let resources: [OwnedDescriptor]
        do throws(RootError) {
            resources = try HostResources.open(devices.flatMap(\.resources))
        } catch {
            partition.stop(reason: "its devices' files cannot be opened")
            throw error
        }
        let entry = ManagedPartition(partition: partition, configuration: configuration, devices: devices,
                                     resources: resources)
        let inserted = table.withLock { partitions -> Bool in
            guard partitions[configuration.name] == nil else { return false }
            partitions[configuration.name] = entry
            return true
        }
        guard inserted else {
            partition.stop(reason: "name conflict")
            throw .nameTaken(configuration.name)
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

    private static func read(_ path: String, what: String, fix: String) throws(RootError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .invalidRequest("\(what) \(path) does not exist: \(fix).")
        }
        return [UInt8](data)
    }

    /// Starts, pauses, resumes, stops or shuts down a partition.
    public func perform(_ action: String, on name: String) throws(RootError) -> PartitionInfo {
        let entry = try managed(name)
        let partition = entry.partition
        let request = "Cannot \(action) \(name)"
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
        logger.info("[\(partition.name)] \(line)")
    }

    public func partition(_ partition: Partition, processor vp: UInt32, synicPagesChanged pages: SynICPages) {
        parentLink?.synicPagesChanged(partitionID: partition.id, vp: vp, pages: pages)
    }
}
