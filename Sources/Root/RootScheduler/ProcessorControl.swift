import ControlGroups
import Glibc
import Logging
import ManagementAPI
import Scheduling
import Synchronization

/// How `hv root` places and weighs processor threads (Docs/scheduling.md).
public struct ProcessorControlOptions: Sendable, Equatable {
    /// Host processors the parent partition's threads are kept on, apart from every virtual
    /// processor; nil leaves the parent where it runs.
    public var parentProcessors: [Int]?
    /// How the whole instance weighs against the host's other work, on Hyper-V's scale (100 is
    /// one busy host thread); nil gives it 100 per host processor.
    public var instanceWeight: Int?
    /// False keeps every thread where it is: no control group is made or touched.
    public var enabled: Bool

    public init(parentProcessors: [Int]? = nil, instanceWeight: Int? = nil, enabled: Bool = true) {
        self.parentProcessors = parentProcessors
        self.instanceWeight = instanceWeight
        self.enabled = enabled
    }
}

/// The root's processor controls: each partition's reserve, limit, weight and pinning turned
/// into a plan (`SchedulingTable`, pure policy) and the plan into control groups
/// (`ControlGroupInstance`, the mechanism): one group per partition holding its virtual
/// processors' threads, and one for the parent's threads (pinned apart when asked). The kernel's
/// scheduler does the scheduling; nothing here runs a loop of its own.
///
/// Where the host has no writable hierarchy, it says so once and carries on uncontrolled: the
/// controls are still checked (a reserve that cannot be met is still refused) and reported as
/// not enforced. Control-group files are written under the lock (cgroupfs, never a socket), so
/// plans reach the kernel in the order they were made.
final class ProcessorControl: Sendable {
    /// The name of the parent's group; partition names are lower-case, so none can be this.
    static let parentGroupName = "Parent"
    /// The root instance's name in `hv/<instance>.<pid>.<start>`.
    static let instanceName = "root"

    private let logger: Logger
    /// The instance's groups, or nil when uncontrolled.
    let instance: ControlGroupInstance?
    /// How controls are enforced, or why they are not (for `GET /v1/root` and the log).
    let summary: String
    private let state: Mutex<State>
    /// Every scheduled partition's controls as last changed, for readers (the API's partition
    /// listings) that must not wait while a change writes control files under `state`'s lock.
    private let published = Mutex<[String: ProcessorControlsInfo]>([:])

    struct State {
        var table: SchedulingTable
        var groups: [String: ThreadGroup] = [:]
        var settings: [String: ProcessorSettings] = [:]
        var parentGroup: ThreadGroup?
        var parentProcessID: Int32?
        /// Partitions whose group's last write failed, and why: shown as not enforced until a
        /// later write succeeds.
        var writeFailures: [String: String] = [:]
        /// Partitions one of whose processor threads could not join their group: shown as not
        /// enforced until they stop (that thread runs outside the controls).
        var threadsOutside: Set<String> = []
        /// Partitions part of whose controls this host cannot enforce (a limit without CFS
        /// bandwidth control, a pinning without a writable cpuset): shown as not enforced.
        var partial: Set<String> = []
        /// Sentences already logged about parts of a plan the host cannot enforce.
        var dropped: Set<String> = []
    }

    /// - Parameters:
    ///   - instanceName: the instance's name below `hv/` (tests give their own).
    ///   - discovery: the hierarchy to use, or why there is none (nil: look at this host's).
    init(options: ProcessorControlOptions, logger: Logger, instanceName: String = ProcessorControl.instanceName,
         discovery: ControlGroupDiscovery? = nil) throws(RootError) {
        self.logger = logger
        var instance: ControlGroupInstance?
        var summary: String
        var processors = Self.onlineProcessors()
        if !options.enabled {
            summary = "Processor controls are off (--no-processor-controls): partitions run uncontrolled."
        } else {
            switch discovery ?? ControlGroupHierarchy.discover() {
            case .unavailable(let reason):
                summary = reason
            case .available(let hierarchy):
                let sweep = ControlGroupInstance.sweepStale(in: hierarchy)
                if !sweep.removed.isEmpty {
                    logger.info("removed the control groups of roots that are gone: \(sweep.removed.joined(separator: ", "))")
                }
                for failure in sweep.failures { logger.warning("could not remove a stale control group: \(failure)") }
                do throws(ControlGroupError) {
                    let created = try ControlGroupInstance.create(in: hierarchy, name: instanceName)
                    instance = created
                    processors = (try? hierarchy.availableProcessors()) ?? processors
                    summary = "\(hierarchy)"
                    for missing in created.capabilities.missing { logger.notice("\(missing)") }
                } catch {
                    summary = "Processor controls are off, and partitions run uncontrolled: \(error)"
                }
            }
        }
        if let instance {
            let weight = min(CPUControls.weightRange.upperBound, max(1, options.instanceWeight ?? 100 * processors.count))
            do throws(ControlGroupError) {
                try instance.setWeight(shares: max(2, weight * 1024 / 100), weight: weight)
                summary += "; instance weight \(weight)"
            } catch {
                logger.warning("could not weigh the root's control groups against other host work: \(error)")
            }
        }
        let table: SchedulingTable
        do throws(SchedulingRefusal) {
            table = try SchedulingTable(host: HostProcessors(processors: processors, parentProcessors: options.parentProcessors))
        } catch {
            do throws(ControlGroupError) {
                try instance?.remove()
            } catch let removal {
                logger.warning("the root's control groups could not be removed: \(removal)")
            }
            throw .invalidRequest("Cannot start the root scheduler: \(error)")
        }
        self.instance = instance
        self.summary = summary
        state = Mutex(State(table: table))
        if instance == nil {
            logger.notice("\(summary)")
        } else {
            logger.info("processor controls: \(summary)")
        }
        // The parent's threads get a group of their own in the instance, pinned apart when asked,
        // else sharing every processor at the default weight: its device threads then compete
        // with the partitions they serve inside the instance, whatever the instance's weight.
        let parent = table.plan.parent ?? GroupParameters(shares: CPUGroupSettings.default.shares,
                                                          weight: CPUGroupSettings.default.weight)
        state.withLock { state in _ = apply(PlanUpdate(changed: [:], removed: [], parent: .set(parent)), &state) }
    }

    /// Whether control groups enforce the controls.
    var isEnforced: Bool { instance != nil }

    // MARK: Partitions

    /// Checks a new partition's controls against every other partition's and makes its group.
    /// - Throws: `.invalidRequest` for values out of range or a bad pinning, `.conflict` when
    ///   its reserve cannot be met together with the others', `.nameTaken` for a name in use.
    func admit(name: String, processorCount: Int, settings: ProcessorSettings?) throws(RootError) {
        let settings = Self.normalized(settings ?? ProcessorSettings())
        let demand = try Self.demand(name: name, processorCount: processorCount, settings: settings)
        try withState { state throws(RootError) in
            guard state.table.partitions[name] == nil else { throw .nameTaken(name) }
            let update: PlanUpdate
            do throws(SchedulingRefusal) {
                update = try state.table.set(demand)
            } catch {
                throw Self.rootError(error)
            }
            state.settings[name] = settings
            let failures = apply(update, &state)
            // Controlled, but its group could not be made or written (the log says why): it would
            // run outside its controls while the table counts its reserve, so it is refused.
            guard instance != nil, state.groups[name] == nil || failures[name] != nil else { return }
            let reason = failures[name] ?? "it has no control group (the root's log says why)"
            let undo = state.table.remove(partition: name)
            state.settings[name] = nil
            state.writeFailures[name] = nil
            deleteGroup(of: name, &state)
            apply(undo, &state)
            throw .conflict("Partition \(name)'s processor controls could not be set up: \(reason).")
        }
    }

    /// Changes a partition's controls while it runs; the other partitions' weights follow.
    func change(name: String, to change: ProcessorSettings) throws(RootError) {
        try withState { state throws(RootError) in
            guard let current = state.table.partitions[name], let settings = state.settings[name] else {
                throw .conflict("Partition \(name) has stopped, so its processor controls cannot change.")
            }
            let next = Self.normalized(settings.applying(change))
            let demand = try Self.demand(name: name, processorCount: current.processorCount, settings: next)
            let update: PlanUpdate
            do throws(SchedulingRefusal) {
                update = try state.table.set(demand)
            } catch {
                throw Self.rootError(error)
            }
            state.settings[name] = next
            guard let reason = apply(update, &state)[name] else { return }
            // The kernel took part of the change at most: the previous controls are written back
            // (they fitted with every other partition's a moment ago) and the change refused.
            let previous = try Self.demand(name: name, processorCount: current.processorCount, settings: settings)
            do throws(SchedulingRefusal) {
                let back = try state.table.set(previous)
                state.settings[name] = settings
                apply(back, &state)
            } catch {
                logger.error("partition \(name): its previous processor controls could not be planned again: \(error)")
            }
            throw .conflict("Partition \(name)'s processor controls could not be changed: \(reason). Its previous controls are kept\(Self.isEnforced(name, state) ? "" : ", but not enforced").")
        }
    }

    /// A partition's virtual processor thread joins its group (called on that thread).
    func attach(thread tid: Int32, to name: String) {
        guard let group = state.withLock({ $0.groups[name] }) else { return }
        do throws(ControlGroupError) {
            try group.attach(thread: tid)
        } catch {
            logger.warning("partition \(name): a processor thread could not join its control group: \(error)")
            // That thread runs outside the partition's controls, which are no longer in force.
            withState { state in
                if state.groups[name] != nil { state.threadsOutside.insert(name) }
            }
        }
    }

    /// The partition's processors are gone: its group is deleted (after its usage is read) and
    /// its reserve given back, which reweighs the others.
    /// - Returns: the group's final CPU usage in nanoseconds, where the group counted it.
    @discardableResult
    func release(name: String) -> UInt64? {
        withState { state -> UInt64? in
            guard state.table.partitions[name] != nil || state.groups[name] != nil else { return nil }
            let update = state.table.remove(partition: name)
            state.settings[name] = nil
            state.writeFailures[name] = nil
            state.threadsOutside.remove(name)
            state.partial.remove(name)
            let usage = state.groups[name].flatMap { try? $0.usageNanoseconds() }
            deleteGroup(of: name, &state)
            apply(update, &state)
            return usage
        }
    }

    /// The controls in force for `name`, if it is scheduled.
    func controls(of name: String) -> ProcessorControlsInfo? {
        published.withLock { $0[name] }
    }

    /// Runs `body` on the state, then publishes every partition's controls as they are now.
    private func withState<T, E: Error>(_ body: (inout State) throws(E) -> T) throws(E) -> T {
        try state.withLock { state throws(E) -> T in
            defer {
                var infos: [String: ProcessorControlsInfo] = [:]
                for (name, demand) in state.table.partitions {
                    infos[name] = ProcessorControlsInfo(
                        reserve: demand.controls.reserve, limit: demand.controls.limit, weight: demand.controls.weight,
                        affinity: demand.pinnedProcessors, enforced: Self.isEnforced(name, state))
                }
                published.withLock { $0 = infos }
            }
            return try body(&state)
        }
    }

    /// The partition's group directories and its usage so far, while it has a group.
    func group(of name: String) -> (directories: [String], usage: UInt64?)? {
        guard let group = state.withLock({ $0.groups[name] }) else { return nil }
        return (group.directories, instance?.capabilities.usage == true ? try? group.usageNanoseconds() : nil)
    }

    // MARK: The parent

    /// A parent connected: every thread of its process joins its group (new threads follow
    /// their creator), again after each reconnection.
    func parentConnected(processID: Int32) {
        let group = state.withLock { state -> ThreadGroup? in
            state.parentProcessID = processID
            return state.parentGroup
        }
        guard let group else { return }
        do throws(ControlGroupError) {
            try group.attach(process: processID)
            logger.info("parent partition (pid \(processID)) placed in its control group")
        } catch {
            logger.warning("the parent partition (pid \(processID)) could not join its control group: \(error)")
        }
    }

    /// Removes every group of the instance (root shutdown).
    func shutdown() {
        guard let instance else { return }
        withState { state in
            state.groups.removeAll()
            state.parentGroup = nil
        }
        do throws(ControlGroupError) {
            try instance.remove()
        } catch {
            logger.warning("the root's control groups could not all be removed: \(error)")
        }
    }

    // MARK: Applying plans

    /// Writes what changed in the plan into the groups, making the groups that are new. A group
    /// whose write fails is marked not enforced (`State.writeFailures`) until one succeeds.
    /// - Returns: why each partition whose group could not be written now failed.
    @discardableResult
    private func apply(_ update: PlanUpdate, _ state: inout State) -> [String: String] {
        guard let instance else { return [:] }
        var failures: [String: String] = [:]
        for (name, parameters) in update.changed.sorted(by: { $0.key < $1.key }) {
            let group: ThreadGroup
            if let existing = state.groups[name] {
                group = existing
            } else {
                do throws(ControlGroupError) {
                    group = try instance.makeGroup(named: name)
                } catch {
                    logger.warning("partition \(name): its control group could not be made: \(error)")
                    failures[name] = "its control group could not be made: \(error)"
                    continue
                }
                state.groups[name] = group
            }
            do throws(ControlGroupError) {
                let (settings, complete) = settings(parameters, &state)
                try group.apply(settings)
                state.writeFailures[name] = nil
                if complete { state.partial.remove(name) } else { state.partial.insert(name) }
            } catch {
                logger.warning("partition \(name): its processor controls could not be applied: \(error)")
                failures[name] = "its control group could not be written: \(error)"
                state.writeFailures[name] = failures[name]
            }
        }
        switch update.parent {
        case .unchanged:
            break
        case .set(let parameters):
            do throws(ControlGroupError) {
                let group: ThreadGroup
                if let existing = state.parentGroup {
                    group = existing
                } else {
                    group = try instance.makeGroup(named: Self.parentGroupName)
                }
                state.parentGroup = group
                try group.apply(settings(parameters, &state).settings)
                if let pid = state.parentProcessID { try group.attach(process: pid) }
            } catch {
                logger.warning("the parent partition's control group could not be set up: \(error)")
            }
        case .removed:
            // No longer kept apart: back to sharing every processor.
            do throws(ControlGroupError) {
                try state.parentGroup?.apply(CPUGroupSettings.default)
            } catch {
                logger.warning("the parent partition's control group could not be reset: \(error)")
            }
        }
        return failures
    }

    /// Whether the kernel holds partition `name`'s controls as planned: its group exists, its
    /// last write succeeded and every one of its threads joined it.
    private static func isEnforced(_ name: String, _ state: State) -> Bool {
        state.groups[name] != nil && state.writeFailures[name] == nil && !state.threadsOutside.contains(name)
            && !state.partial.contains(name)
    }

    /// Deletes partition `name`'s group, if it has one (its threads must have left).
    private func deleteGroup(of name: String, _ state: inout State) {
        guard let group = state.groups.removeValue(forKey: name) else { return }
        do throws(ControlGroupError) {
            try group.delete()
        } catch {
            logger.warning("partition \(name): its control group could not be removed: \(error)")
        }
    }

    /// A plan's parameters in the kernel's units, less what this host cannot do (said once each),
    /// and whether nothing had to be left out.
    private func settings(_ parameters: GroupParameters, _ state: inout State) -> (settings: CPUGroupSettings, complete: Bool) {
        let requested = CPUGroupSettings(
            shares: parameters.shares, weight: parameters.weight,
            bandwidth: parameters.quota.map {
                CPUBandwidth(quotaMicroseconds: $0.quotaMicroseconds, periodMicroseconds: $0.periodMicroseconds)
            },
            processors: parameters.processors)
        guard let instance else { return (requested, true) }
        let (settings, dropped) = requested.restricted(to: instance.capabilities)
        for sentence in dropped where state.dropped.insert(sentence).inserted { logger.notice("\(sentence)") }
        return (settings, dropped.isEmpty)
    }

    // MARK: Helpers

    /// `settings` with its affinity as a set, ascending: a list with repeats is kept and
    /// reported no longer than the host's processors.
    static func normalized(_ settings: ProcessorSettings) -> ProcessorSettings {
        var settings = settings
        settings.affinity = settings.affinity.map { Array(Set($0)).sorted() }
        return settings
    }

    static func demand(name: String, processorCount: Int, settings: ProcessorSettings) throws(RootError) -> PartitionDemand {
        let controls: CPUControls
        do throws(CPUControlsError) {
            controls = try CPUControls(reserve: settings.reserve ?? 0, limit: settings.limit ?? 100,
                                       weight: settings.weight ?? CPUControls.default.weight)
        } catch {
            throw .invalidRequest("Partition \(name): \(error)")
        }
        return PartitionDemand(name: name, processorCount: processorCount, controls: controls,
                               pinnedProcessors: settings.affinity.flatMap { $0.isEmpty ? nil : $0 })
    }

    static func rootError(_ refusal: SchedulingRefusal) -> RootError {
        switch refusal {
        case .reservesExceedCapacity: .conflict("\(refusal)")
        case .host, .partition: .invalidRequest("\(refusal)")
        }
    }

    /// The online processors, where no cpuset says otherwise.
    static func onlineProcessors() -> [Int] {
        Array(0..<max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }
}

