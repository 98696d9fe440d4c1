import GuestMemory
import HyperV
import Synchronization

/// The Hyper-V hypervisor interface of one child partition, emulated in user space
/// (Docs/hyperv-interface.md §1-§5): partition-wide synthetic MSRs, the hypercall page,
/// the reference TSC page, hypercall dispatch and the per-processor SynICs.
public final class HvPartition: Sendable {
    /// One SynIC per virtual processor, indexed by VP index.
    public let processors: [HvVirtualProcessor]
    /// The partition's message and event connections.
    public let connections: HvConnectionTable
    /// How reference time relates to the host TSC.
    public let time: ReferenceTimeParameters
    /// The partition's RAM.
    public let guestMemory: GuestMemory
    /// Messages and events that passed through the root.
    public let counters: SynICCounters
    private let environment: any HvEnvironment
    private let state = Mutex(PartitionState())

    struct PartitionState {
        var guestOSID: UInt64 = 0
        var hypercall = OverlayPageRegister(rawValue: 0)
        var referenceTSC = OverlayPageRegister(rawValue: 0)
        var crashParameters = [UInt64](repeating: 0, count: 5)
        var tscInvariantControl: UInt64 = 0
    }

    /// The APIC timer input frequency KVM's in-kernel LAPIC uses (1 GHz).
    public static let apicFrequencyHz: UInt64 = 1_000_000_000

    /// - Parameters:
    ///   - memory: the partition's RAM.
    ///   - apicIDs: the local APIC ID of each virtual processor, by VP index.
    ///   - time: the reference-time parameters.
    ///   - environment: interrupt injection and observers.
    public init(memory: GuestMemory, apicIDs: [UInt32], time: ReferenceTimeParameters, environment: any HvEnvironment) {
        self.guestMemory = memory
        self.time = time
        self.environment = environment
        connections = HvConnectionTable()
        let counters = SynICCounters()
        self.counters = counters
        processors = apicIDs.enumerated().map { index, apicID in
            HvVirtualProcessor(index: UInt32(index), apicID: apicID, memory: memory, environment: environment,
                               counters: counters)
        }
    }

    /// Partition reference time now, in 100 ns units.
    public func referenceTime() -> UInt64 {
        time.referenceTime(hostTSC: environment.hostTimestampCounter())
    }

    // MARK: Synthetic MSRs (Docs/hyperv-interface.md §2)

    /// Reads synthetic MSR `index` on processor `vp`.
    /// - Returns: the value, or `nil` if the read must raise #GP.
    public func readMSR(vp: Int, index: UInt32) -> UInt64? {
        guard processors.indices.contains(vp), SyntheticMSR.range.contains(index) else { return nil }
        let msr = SyntheticMSR(rawValue: index)
        switch msr {
        case .guestOSID: return state.withLock { $0.guestOSID }
        case .hypercall: return state.withLock { $0.hypercall.rawValue }
        case .vpIndex: return UInt64(processors[vp].index)
        case .timeReferenceCount:
            guard let tsc = environment.guestTimestampCounter(vp: processors[vp].index) else { return referenceTime() }
            return time.referenceTime(guestTSC: tsc)
        case .referenceTSC: return state.withLock { $0.referenceTSC.rawValue }
        case .tscFrequency: return time.tscFrequencyHz
        case .apicFrequency: return Self.apicFrequencyHz
        case .crashControl: return CrashControl.notify | CrashControl.notifyMessage
        case .tscInvariantControl: return state.withLock { $0.tscInvariantControl }
        default:
            if let parameter = msr.crashParameterIndex { return state.withLock { $0.crashParameters[parameter] } }
            return processors[vp].readMSR(msr)
        }
    }

    /// Writes synthetic MSR `index` on processor `vp`.
    /// - Returns: `false` if the write must raise #GP (read-only MSR, unknown MSR, a page
    ///   outside guest RAM).
    public func writeMSR(vp: Int, index: UInt32, value: UInt64) -> Bool {
        guard processors.indices.contains(vp), SyntheticMSR.range.contains(index) else { return false }
        let msr = SyntheticMSR(rawValue: index)
        switch msr {
        case .guestOSID:
            state.withLock { $0.guestOSID = value }
            return true
        case .hypercall:
            return writeHypercallMSR(value)
        case .referenceTSC:
            return writeReferenceTSCMSR(value)
        case .vpIndex, .timeReferenceCount, .tscFrequency, .apicFrequency, .synicVersion:
            return false
        case .crashControl:
            if value & CrashControl.notify != 0 { reportCrash(control: value) }
            return true
        case .tscInvariantControl:
            state.withLock { $0.tscInvariantControl = value & 1 }
            return true
        default:
            if let parameter = msr.crashParameterIndex {
                state.withLock { $0.crashParameters[parameter] = value }
                return true
            }
            return processors[vp].writeMSR(msr, value: value)
        }
    }

    /// HYPERCALL: once locked it cannot change; enabling it needs a guest OS ID and writes
    /// the stub into the named page before the processor resumes (Docs/hyperv-interface.md §2.2).
    private func writeHypercallMSR(_ value: UInt64) -> Bool {
        state.withLock { state -> Bool in
            if state.hypercall.rawValue & 0b10 != 0 { return true }
            var register = OverlayPageRegister(rawValue: value & ~UInt64(0xFFC))
            if register.isEnabled && state.guestOSID == 0 {
                register = OverlayPageRegister(rawValue: register.rawValue & ~1)
            }
            if register.isEnabled {
                guard (try? guestMemory.write(HvHypercallPage.contents(), at: GuestPhysicalAddress(register.pageAddress))) != nil
                else { return false }
            }
            state.hypercall = register
            return true
        }
    }

    /// REFERENCE_TSC: on enable, fill the page with this partition's scale and offset.
    private func writeReferenceTSCMSR(_ value: UInt64) -> Bool {
        state.withLock { state -> Bool in
            let register = OverlayPageRegister(rawValue: value & ~UInt64(0xFFE))
            if register.isEnabled {
                var page = [UInt8](repeating: 0, count: 24)
                page.storeLittleEndian(UInt32(1), at: ReferenceTSCPage.sequenceOffset)
                page.storeLittleEndian(time.scale, at: ReferenceTSCPage.scaleOffset)
                page.storeLittleEndian(time.referenceOffset, at: ReferenceTSCPage.offsetOffset)
                let address = GuestPhysicalAddress(register.pageAddress)
                guard guestMemory.contains(address, length: SynIC.pageSize),
                      (try? guestMemory.write(page, at: address)) != nil else { return false }
            }
            state.referenceTSC = register
            return true
        }
    }

    private func reportCrash(control: UInt64) {
        let parameters = state.withLock { $0.crashParameters }
        var message: String?
        if control & CrashControl.notifyMessage != 0 {
            // P3 = GPA of the message page, P4 = its length (at most one page).
            let length = Int(min(parameters[4], UInt64(SynIC.pageSize)))
            if let bytes = try? guestMemory.read(at: GuestPhysicalAddress(parameters[3]), count: length) {
                message = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
        environment.guestCrashReported(parameters: parameters, message: message)
    }

    /// Whether the hypercall page is enabled.
    public var isHypercallPageEnabled: Bool { state.withLock { $0.hypercall.isEnabled } }

    /// The guest OS ID the guest wrote.
    public var guestOSID: UInt64 { state.withLock { $0.guestOSID } }

    // MARK: Host-originated messages

    /// Posts a message to SINT `sint` of processor `vp` (for the parent's VMBus server).
    public func postMessage(vp: Int, sint: Int, type: SynICMessageType, payload: [UInt8]) -> HvVirtualProcessor.PostResult? {
        guard processors.indices.contains(vp), (0..<SynIC.sintCount).contains(sint),
              payload.count <= SynIC.maximumMessagePayload else { return nil }
        return processors[vp].postMessage(sint: sint, type: type, payload: payload)
    }
}
