import LinuxSupport
import Synchronization

/// Why a virtual processor left KVM_RUN for the root.
public enum ExitReason: Int, CaseIterable, Sendable {
    /// RDMSR or WRMSR of a synthetic MSR (Docs/hyperv-interface.md §2).
    case msrRead, msrWrite
    /// The hypercall page's slow path (port 0xE2).
    case hypercall
    /// HvSignalEvent's fast path that no ioeventfd matched (port 0xE6).
    case signalEvent
    /// A line on the debug port.
    case debugPort
    /// A port the parent partition emulates, forwarded to it.
    case parentPort
    /// Any other port (power control, the null exit, an empty bus).
    case port
    /// A memory access outside RAM.
    case mmio
    /// A kick out of KVM_RUN by the root (pause, stop) rather than the guest.
    case interrupted
    /// Anything that ends the partition (triple fault, failed entry, KVM internal error).
    case fatal

    /// The name used in statistics.
    public var name: String {
        switch self {
        case .msrRead: "msr-read"
        case .msrWrite: "msr-write"
        case .hypercall: "hypercall"
        case .signalEvent: "signal-event"
        case .debugPort: "debug-port"
        case .parentPort: "parent-port"
        case .port: "port"
        case .mmio: "mmio"
        case .interrupted: "interrupted"
        case .fatal: "fatal"
        }
    }
}

/// Exits of one virtual processor by reason. Only the processor's own thread counts; anyone
/// may read.
public final class ExitCounters: Sendable {
    private let counts = Mutex([UInt64](repeating: 0, count: ExitReason.allCases.count))

    public init() {}

    func count(_ reason: ExitReason) {
        counts.withLock { $0[reason.rawValue] &+= 1 }
    }

    /// The counts by reason name, leaving out reasons that never happened.
    public var snapshot: [String: UInt64] {
        let values = counts.withLock { $0 }
        var result: [String: UInt64] = [:]
        for reason in ExitReason.allCases where values[reason.rawValue] > 0 { result[reason.name] = values[reason.rawValue] }
        return result
    }

    /// Every exit so far.
    public var total: UInt64 { counts.withLock { $0.reduce(0, &+) } }
}

/// What one virtual processor has consumed. It outlives the processor (a stopped partition
/// still reports it), so it holds no vCPU or thread.
public final class ProcessorAccounting: Sendable {
    public let vp: Int
    /// Exits by reason.
    public let exits = ExitCounters()
    private let runningThread = Atomic<Int32>(0)
    private let finalCPU = Atomic<UInt64>(0)

    init(vp: Int) {
        self.vp = vp
    }

    /// The kernel thread id of the processor's thread while it runs.
    public var threadID: Int32? {
        let id = runningThread.load(ordering: .acquiring)
        return id == 0 ? nil : id
    }

    /// The processor time its thread used in all, once the thread has ended.
    public var finalCPUNanoseconds: UInt64? {
        threadID == nil ? finalCPU.load(ordering: .acquiring) : nil
    }

    /// Called on the processor's thread as it starts.
    func threadStarted() {
        runningThread.store(OSThread.currentKernelThreadID, ordering: .releasing)
    }

    /// Called on the processor's thread as it ends.
    func threadEnding() {
        finalCPU.store(OSThread.currentCPUNanoseconds, ordering: .releasing)
        runningThread.store(0, ordering: .releasing)
    }
}
