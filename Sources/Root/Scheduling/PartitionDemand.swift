/// What one partition asks of the host's processors: its virtual processor count, its
/// controls, and optionally the host processors its virtual processors must run on.
public struct PartitionDemand: Sendable, Hashable {
    /// The partition's name, which keys its group in the plan.
    public var name: String
    /// How many virtual processors (threads) the partition runs.
    public var processorCount: Int
    public var controls: CPUControls
    /// Host processor numbers its virtual processors are pinned to; nil lets them run on any
    /// processor not kept for the parent.
    public var pinnedProcessors: [Int]?

    /// The most virtual processors a partition may have (KVM's own ceiling, KVM_MAX_VCPUS, is
    /// of this order).
    public static let maximumProcessorCount = 4096

    public init(name: String, processorCount: Int, controls: CPUControls = .default, pinnedProcessors: [Int]? = nil) {
        self.name = name
        self.processorCount = processorCount
        self.controls = controls
        self.pinnedProcessors = pinnedProcessors
    }

    /// The reserve in hundredths of a host processor: reserve% × virtual processors.
    public var reservedHundredths: Int { controls.reserve * processorCount }
}

/// The host processors the root may schedule on.
public struct HostProcessors: Sendable, Hashable {
    /// Host processor numbers available to the root (its cpuset's effective CPUs).
    public var processors: [Int]
    /// When set, the parent partition's threads run only on these processors and no virtual
    /// processor does; nil leaves the parent where it is and lets it share every processor.
    public var parentProcessors: [Int]?

    /// Processor numbers above this are refused (the kernel's NR_CPUS is at most 8192).
    public static let processorNumberLimit = 8192

    public init(processors: [Int], parentProcessors: [Int]? = nil) {
        self.processors = processors
        self.parentProcessors = parentProcessors
    }

    /// Host processors numbered 0..<count, nothing kept for the parent.
    public init(count: Int) {
        self.init(processors: Array(0..<max(count, 0)))
    }
}
