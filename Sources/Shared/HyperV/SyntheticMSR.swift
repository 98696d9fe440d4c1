/// A Hyper-V synthetic model-specific register (TLFS "Synthetic MSRs";
/// Docs/hyperv-interface.md §2).
///
/// A struct rather than an enum so that any index a guest uses stays representable.
public struct SyntheticMSR: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// The range of indices reserved for synthetic MSRs; the root filters all of it.
    public static let range: ClosedRange<UInt32> = 0x4000_0000...0x4000_01FF

    /// HV_X64_MSR_GUEST_OS_ID: the guest's identity, written before HYPERCALL.
    public static let guestOSID = SyntheticMSR(rawValue: 0x4000_0000)
    /// HV_X64_MSR_HYPERCALL: enable bit, locked bit and the GPFN of the hypercall page.
    public static let hypercall = SyntheticMSR(rawValue: 0x4000_0001)
    /// HV_X64_MSR_VP_INDEX: read-only index of the virtual processor.
    public static let vpIndex = SyntheticMSR(rawValue: 0x4000_0002)
    /// HV_X64_MSR_RESET (not advertised).
    public static let reset = SyntheticMSR(rawValue: 0x4000_0003)
    /// HV_X64_MSR_VP_RUNTIME (not advertised).
    public static let vpRuntime = SyntheticMSR(rawValue: 0x4000_0010)
    /// HV_X64_MSR_TIME_REF_COUNT: partition reference time in 100 ns units.
    public static let timeReferenceCount = SyntheticMSR(rawValue: 0x4000_0020)
    /// HV_X64_MSR_REFERENCE_TSC: enable bit and GPFN of the reference TSC page.
    public static let referenceTSC = SyntheticMSR(rawValue: 0x4000_0021)
    /// HV_X64_MSR_TSC_FREQUENCY: the guest TSC frequency in Hz.
    public static let tscFrequency = SyntheticMSR(rawValue: 0x4000_0022)
    /// HV_X64_MSR_APIC_FREQUENCY: the local APIC timer input frequency in Hz.
    public static let apicFrequency = SyntheticMSR(rawValue: 0x4000_0023)
    /// HV_X64_MSR_EOI (APIC access MSRs; not advertised).
    public static let eoi = SyntheticMSR(rawValue: 0x4000_0070)
    /// HV_X64_MSR_ICR (not advertised).
    public static let icr = SyntheticMSR(rawValue: 0x4000_0071)
    /// HV_X64_MSR_TPR (not advertised).
    public static let tpr = SyntheticMSR(rawValue: 0x4000_0072)
    /// HV_X64_MSR_VP_ASSIST_PAGE: written by Linux on every CPU regardless of CPUID.
    public static let vpAssistPage = SyntheticMSR(rawValue: 0x4000_0073)
    /// HV_X64_MSR_SCONTROL: SynIC enable.
    public static let synicControl = SyntheticMSR(rawValue: 0x4000_0080)
    /// HV_X64_MSR_SVERSION: SynIC version, read-only, 1.
    public static let synicVersion = SyntheticMSR(rawValue: 0x4000_0081)
    /// HV_X64_MSR_SIEFP: SynIC event-flags page.
    public static let synicEventFlagsPage = SyntheticMSR(rawValue: 0x4000_0082)
    /// HV_X64_MSR_SIMP: SynIC message page.
    public static let synicMessagePage = SyntheticMSR(rawValue: 0x4000_0083)
    /// HV_X64_MSR_EOM: end of message; asks for the next queued message.
    public static let endOfMessage = SyntheticMSR(rawValue: 0x4000_0084)
    /// HV_X64_MSR_SINT0; SINTn is `sint(n)`.
    public static let sint0 = SyntheticMSR(rawValue: 0x4000_0090)
    /// HV_X64_MSR_STIMER0_CONFIG; synthetic timers are not advertised.
    public static let syntheticTimer0Config = SyntheticMSR(rawValue: 0x4000_00B0)
    /// HV_X64_MSR_CRASH_P0; P0...P4 are consecutive.
    public static let crashParameter0 = SyntheticMSR(rawValue: 0x4000_0100)
    /// HV_X64_MSR_CRASH_CTL.
    public static let crashControl = SyntheticMSR(rawValue: 0x4000_0105)
    /// HV_X64_MSR_TSC_INVARIANT_CONTROL.
    public static let tscInvariantControl = SyntheticMSR(rawValue: 0x4000_0118)

    /// The SINTn register for `index` in 0..<16.
    public static func sint(_ index: Int) -> SyntheticMSR {
        precondition((0..<SynIC.sintCount).contains(index))
        return SyntheticMSR(rawValue: sint0.rawValue + UInt32(index))
    }

    /// The SINT number if this is one of SINT0...SINT15.
    public var sintIndex: Int? {
        let first = SyntheticMSR.sint0.rawValue
        guard rawValue >= first, rawValue < first + UInt32(SynIC.sintCount) else { return nil }
        return Int(rawValue - first)
    }

    /// The crash parameter number if this is one of CRASH_P0...CRASH_P4.
    public var crashParameterIndex: Int? {
        let first = SyntheticMSR.crashParameter0.rawValue
        guard rawValue >= first, rawValue < first + 5 else { return nil }
        return Int(rawValue - first)
    }
}

/// The value of an "overlay page" MSR: HYPERCALL, REFERENCE_TSC, SIMP and SIEFP all keep an
/// enable bit in bit 0 and a guest page frame number in bits 63:12.
public struct OverlayPageRegister: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bit 0: the page is enabled.
    public var isEnabled: Bool { rawValue & 1 != 0 }
    /// Bits 63:12: the guest page frame number.
    public var pageNumber: UInt64 { rawValue >> 12 }
    /// The guest physical address of the page.
    public var pageAddress: UInt64 { rawValue & ~UInt64(0xFFF) }

    public init(enabled: Bool, pageNumber: UInt64) {
        rawValue = (pageNumber << 12) | (enabled ? 1 : 0)
    }
}

/// A SINTx register (TLFS "SINTx Registers"; Docs/hyperv-interface.md §4.2).
public struct SINTRegister: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The reset value: masked, vector 0.
    public static let reset = SINTRegister(rawValue: 1 << 16)
    /// The bits a guest may set: vector, masked, auto-EOI and polling.
    public static let writableBits: UInt64 = 0xFF | (1 << 16) | (1 << 17) | (1 << 18)

    /// Bits 7:0: the interrupt vector.
    public var vector: UInt8 { UInt8(truncatingIfNeeded: rawValue) }
    /// Bit 16: no interrupt is delivered and messages stay queued.
    public var isMasked: Bool { rawValue & (1 << 16) != 0 }
    /// Bit 17: auto-EOI, which KVM's in-kernel LAPIC cannot honour (hint bit 9 asks guests not to use it).
    public var autoEOI: Bool { rawValue & (1 << 17) != 0 }
    /// Bit 18: polling mode; messages and flags are delivered but no interrupt is raised.
    public var isPolling: Bool { rawValue & (1 << 18) != 0 }

    public init(vector: UInt8, masked: Bool = false, autoEOI: Bool = false, polling: Bool = false) {
        var value = UInt64(vector)
        if masked { value |= 1 << 16 }
        if autoEOI { value |= 1 << 17 }
        if polling { value |= 1 << 18 }
        rawValue = value
    }
}

/// HV_X64_MSR_CRASH_CTL bits.
public enum CrashControl {
    /// Bit 63: the guest notifies a crash by writing CRASH_CTL.
    public static let notify: UInt64 = 1 << 63
    /// Bit 62: P3/P4 carry the GPA and length of a crash message page.
    public static let notifyMessage: UInt64 = 1 << 62
}
