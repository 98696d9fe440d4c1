import KVM
import LinuxSupport

/// Everything needed to build a child partition.
public struct PartitionSpecification: Sendable {
    /// A unique, human-readable name.
    public var name: String
    /// The number of virtual processors (1-64).
    public var processorCount: Int
    /// Guest RAM in bytes (a multiple of 2 MiB, at least 16 MiB).
    public var memorySize: Int
    /// What to boot.
    public var image: BootImage
    /// For a Linux guest: the legacy-PC platform (an 8259 pair and ISA IRQ numbers, ACPI with a
    /// PM1 block) instead of hardware-reduced ACPI, because one of its devices has a driver that
    /// asks for an ISA IRQ by number (Docs/hyperv-interface.md §13.4).
    public var legacyPC: Bool

    public init(name: String, processorCount: Int, memorySize: Int, image: BootImage, legacyPC: Bool = false) {
        self.name = name
        self.processorCount = processorCount
        self.memorySize = memorySize
        self.image = image
        self.legacyPC = legacyPC
    }

    /// Limits the root enforces on specifications.
    public static let processorLimit = 1...64
    public static let minimumMemory = 16 << 20
    public static let maximumMemory = 3 << 30
}

/// A guest image.
public enum BootImage: Sendable {
    /// An Embedded Swift guest: an ELF executable entered in 64-bit mode on every processor,
    /// with the partition's argument string in its boot-information page.
    case embedded(elf: [UInt8], arguments: String)
    /// A Linux bzImage booted with the 64-bit boot protocol (Docs/hyperv-interface.md §13.5),
    /// with an optional initrd, ACPI tables describing the VMBus device and COM1, and the
    /// application processors started by the guest with INIT/SIPI.
    case linux(kernel: [UInt8], initrd: [UInt8]?, commandLine: String)
}

/// The lifecycle state of a partition.
public enum PartitionState: Sendable, Equatable, CustomStringConvertible {
    case created
    case running
    case paused
    /// Stopped on request or by the guest (power off); resources are released.
    case stopped(reason: String)
    /// Stopped because the guest or its virtual hardware failed; resources are released.
    case crashed(reason: String)

    /// The state's name, without its reason.
    public var name: String {
        switch self {
        case .created: "created"
        case .running: "running"
        case .paused: "paused"
        case .stopped: "stopped"
        case .crashed: "crashed"
        }
    }

    /// Why the partition stopped or crashed.
    public var reason: String? {
        switch self {
        case .stopped(let reason), .crashed(let reason): reason
        default: nil
        }
    }

    /// Whether the partition has released its processors and memory.
    public var isFinal: Bool {
        switch self {
        case .stopped, .crashed: true
        default: false
        }
    }

    public var description: String {
        reason.map { "\(name) (\($0))" } ?? name
    }
}

/// Why a partition operation was refused or failed. Failures of KVM and of Linux system calls
/// keep their typed cause beside what was being done.
public enum PartitionError: Error, Equatable, CustomStringConvertible {
    /// The specification or request is invalid (the reason names the fix).
    case invalidSpecification(String)
    /// The guest image cannot be booted.
    case boot(BootError)
    /// Something else failed inside the partition.
    case hypervisor(String)
    /// The partition's state does not allow the operation.
    case invalidTransition(from: PartitionState, operation: String)
    /// The operation could not be done in time (the reason says why and what happened instead);
    /// it may be asked for again.
    case timedOut(String)
    /// A KVM request failed while doing `context` (e.g. "could not create partition alpha").
    case kvm(String, KVMError)
    /// A Linux system call failed while doing `context`.
    case system(String, SystemError)

    public var description: String {
        switch self {
        case .invalidSpecification(let reason): "invalid partition: \(reason)"
        case .boot(let error): error.description
        case .hypervisor(let reason): reason
        case .invalidTransition(let state, let operation): "cannot \(operation) a partition that is \(state.name)"
        case .timedOut(let reason): reason
        case .kvm(let context, let error): "\(context): \(error)"
        case .system(let context, let error): "\(context): \(error)"
        }
    }

    /// `error` as the reason `context` failed, keeping KVM and system errors typed.
    static func failed(_ context: String, _ error: any Error) -> PartitionError {
        switch error {
        case let error as PartitionError: error
        case let error as KVMError: .kvm(context, error)
        case let error as SystemError: .system(context, error)
        default: .hypervisor("\(context): \(error)")
        }
    }
}
