/// The Hyper-V CPUID leaves 0x40000000-0x40000006 (TLFS "Hypervisor CPUID Leaves";
/// Docs/hyperv-interface.md §1).
public enum HypervisorCPUID {
    /// Leaf 0x40000000: maximum leaf and vendor signature.
    public static let vendorLeaf: UInt32 = 0x4000_0000
    /// Leaf 0x40000001: interface signature "Hv#1".
    public static let interfaceLeaf: UInt32 = 0x4000_0001
    /// Leaf 0x40000002: hypervisor version (printed by Linux, not interpreted).
    public static let versionLeaf: UInt32 = 0x4000_0002
    /// Leaf 0x40000003: partition privileges and features.
    public static let featuresLeaf: UInt32 = 0x4000_0003
    /// Leaf 0x40000004: implementation recommendations ("hints").
    public static let recommendationsLeaf: UInt32 = 0x4000_0004
    /// Leaf 0x40000005: implementation limits.
    public static let limitsLeaf: UInt32 = 0x4000_0005
    /// Leaf 0x40000006: hardware features in use (all zero here).
    public static let hardwareFeaturesLeaf: UInt32 = 0x4000_0006
    /// The highest leaf we implement; Linux requires it in [0x40000005, 0x4000FFFF].
    public static let maximumLeaf: UInt32 = hardwareFeaturesLeaf

    /// "Microsoft Hv" in EBX, ECX, EDX.
    public static let vendorSignature: (ebx: UInt32, ecx: UInt32, edx: UInt32) =
        (0x7263_694D, 0x666F_736F, 0x7648_2074)
    /// "Hv#1" in EAX of leaf 0x40000001.
    public static let interfaceSignature: UInt32 = 0x3123_7648

    /// CPUID.1:ECX bit 31, "a hypervisor is present".
    public static let hypervisorPresentBit: UInt32 = 1 << 31
    /// CPUID.1:ECX bit 21, x2APIC.
    public static let x2APICBit: UInt32 = 1 << 21
    /// CPUID.0x80000007:EDX bit 8, invariant TSC.
    public static let invariantTSCBit: UInt32 = 1 << 8
}

/// Partition privilege bits in CPUID 0x40000003 EAX (Docs/hyperv-interface.md §1.3).
public struct PartitionPrivileges: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let vpRuntime = PartitionPrivileges(rawValue: 1 << 0)
    /// TIME_REF_COUNT. Never advertise without `referenceTSC` (Docs/hyperv-interface.md §1.3).
    public static let timeReferenceCount = PartitionPrivileges(rawValue: 1 << 1)
    /// SCONTROL/SVERSION/SIEFP/SIMP/EOM/SINTx.
    public static let synic = PartitionPrivileges(rawValue: 1 << 2)
    /// Synthetic timers; not advertised (every timer program would exit to user space).
    public static let syntheticTimers = PartitionPrivileges(rawValue: 1 << 3)
    public static let apicAccess = PartitionPrivileges(rawValue: 1 << 4)
    /// GUEST_OS_ID and HYPERCALL; mandatory for detection.
    public static let hypercall = PartitionPrivileges(rawValue: 1 << 5)
    /// VP_INDEX; mandatory for detection.
    public static let vpIndex = PartitionPrivileges(rawValue: 1 << 6)
    /// The reference TSC page.
    public static let referenceTSC = PartitionPrivileges(rawValue: 1 << 9)
    /// TSC_FREQUENCY and APIC_FREQUENCY (with EDX bit 8).
    public static let frequencyMSRs = PartitionPrivileges(rawValue: 1 << 11)
    /// TSC_INVARIANT_CONTROL; without it Linux marks the TSC unstable
    /// (Docs/hyperv-interface.md §1.3).
    public static let tscInvariant = PartitionPrivileges(rawValue: 1 << 15)

    /// The recommended set, 0x8A66.
    public static let recommended: PartitionPrivileges = [
        .timeReferenceCount, .synic, .hypercall, .vpIndex, .referenceTSC, .frequencyMSRs, .tscInvariant,
    ]
}

/// Privilege bits in CPUID 0x40000003 EBX. Bits 1 (AccessPartitionId), 12 (CpuManagement),
/// 20 (extended hypercalls) and 22 (isolation) must never be set for a child partition.
public struct PartitionPrivilegesHigh: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let postMessages = PartitionPrivilegesHigh(rawValue: 1 << 4)
    public static let signalEvents = PartitionPrivilegesHigh(rawValue: 1 << 5)
    /// Bits a child partition must never see (Docs/hyperv-interface.md §1.3).
    public static let forbidden = PartitionPrivilegesHigh(rawValue: (1 << 1) | (1 << 12) | (1 << 20) | (1 << 22))
}

/// Feature bits in CPUID 0x40000003 EDX.
public struct HypervisorMiscFeatures: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// TSC_FREQUENCY/APIC_FREQUENCY may be read (pairs with EAX bit 11).
    public static let frequencyRegisters = HypervisorMiscFeatures(rawValue: 1 << 8)
    /// CRASH_P0-P4 and CRASH_CTL are available.
    public static let guestCrashMSRs = HypervisorMiscFeatures(rawValue: 1 << 10)
}

/// Recommendation bits in CPUID 0x40000004 EAX.
public struct HypervisorRecommendations: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// HV_DEPRECATING_AEOI_RECOMMENDED: the guest EOIs SINT interrupts itself. Mandatory with
    /// KVM's in-kernel LAPIC (Docs/hyperv-interface.md §1.3).
    public static let deprecateAutoEOI = HypervisorRecommendations(rawValue: 1 << 9)
}
