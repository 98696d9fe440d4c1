import HyperV

/// A CPUID leaf as the guest will see it.
public struct CPUIDLeaf: Hashable, Sendable {
    public var function: UInt32
    public var index: UInt32
    /// Whether `index` selects a subleaf.
    public var indexSignificant: Bool
    public var eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32

    public init(function: UInt32, index: UInt32 = 0, indexSignificant: Bool = false,
                eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) {
        self.function = function
        self.index = index
        self.indexSignificant = indexSignificant
        self.eax = eax
        self.ebx = ebx
        self.ecx = ecx
        self.edx = edx
    }
}

/// The CPUID a child partition sees: the host's virtualizable leaves, with every KVM
/// paravirtual leaf removed and the Hyper-V leaves added (Docs/hyperv-interface.md §1).
public enum HvCPUID {
    /// Privileges advertised in 0x40000003 EAX: the recommended set 0x8A66.
    public static let privileges: PartitionPrivileges = .recommended
    /// 0x40000003 EBX: post messages and signal events (0x30).
    public static let privilegesHigh: PartitionPrivilegesHigh = [.postMessages, .signalEvents]
    /// 0x40000003 EDX: frequency MSRs and crash MSRs.
    public static let miscFeatures: HypervisorMiscFeatures = [.frequencyRegisters, .guestCrashMSRs]
    /// 0x40000004 EAX: only "deprecate auto-EOI" (0x200).
    public static let recommendations: HypervisorRecommendations = [.deprecateAutoEOI]
    /// The version reported in 0x40000002 (major 10, minor 0; build 1).
    public static let build: UInt32 = 1

    /// The Hyper-V leaves 0x40000000-0x40000006, plus explicit zero leaves at 0x40000081/82
    /// that Linux probes unconditionally.
    public static func hypervisorLeaves(processorCount: Int) -> [CPUIDLeaf] {
        let signature = HypervisorCPUID.vendorSignature
        return [
            CPUIDLeaf(function: HypervisorCPUID.vendorLeaf, eax: HypervisorCPUID.maximumLeaf,
                      ebx: signature.ebx, ecx: signature.ecx, edx: signature.edx),
            CPUIDLeaf(function: HypervisorCPUID.interfaceLeaf, eax: HypervisorCPUID.interfaceSignature),
            CPUIDLeaf(function: HypervisorCPUID.versionLeaf, eax: build, ebx: 0x000A_0000),
            CPUIDLeaf(function: HypervisorCPUID.featuresLeaf, eax: privileges.rawValue,
                      ebx: privilegesHigh.rawValue, ecx: 0, edx: miscFeatures.rawValue),
            CPUIDLeaf(function: HypervisorCPUID.recommendationsLeaf, eax: recommendations.rawValue, ebx: 0xFFFF_FFFF),
            CPUIDLeaf(function: HypervisorCPUID.limitsLeaf, eax: UInt32(processorCount), ebx: UInt32(processorCount)),
            CPUIDLeaf(function: HypervisorCPUID.hardwareFeaturesLeaf),
            CPUIDLeaf(function: 0x4000_0081),
            CPUIDLeaf(function: 0x4000_0082),
        ]
    }

    /// Builds a partition's CPUID from the host's supported leaves.
    ///
    /// Every leaf in 0x40000000-0x4FFFFFFF is dropped (Linux picks the hypervisor with the highest
    /// signature base, so a KVM signature would win: Docs/hyperv-interface.md §1.1); CPUID.1:ECX
    /// gets the hypervisor-present bit, 0x80000007:EDX the invariant-TSC bit, and leaves 0xB/0x1F
    /// report each processor's own x2APIC ID.
    public static func partitionLeaves(host: [CPUIDLeaf], processorCount: Int) -> [CPUIDLeaf] {
        var leaves = host.filter { $0.function & 0xF000_0000 != 0x4000_0000 }
        for index in leaves.indices {
            switch leaves[index].function {
            case 1:
                leaves[index].ecx |= HypervisorCPUID.hypervisorPresentBit
            case 0x8000_0007:
                leaves[index].edx |= HypervisorCPUID.invariantTSCBit
            default:
                break
            }
        }
        if !leaves.contains(where: { $0.function == 0x8000_0007 }) {
            leaves.append(CPUIDLeaf(function: 0x8000_0007, edx: HypervisorCPUID.invariantTSCBit))
        }
        return leaves + hypervisorLeaves(processorCount: processorCount)
    }

    /// The leaves for one virtual processor: CPUID.1:EBX[31:24] carries its initial APIC ID.
    public static func processorLeaves(_ leaves: [CPUIDLeaf], apicID: UInt32) -> [CPUIDLeaf] {
        leaves.map { leaf in
            var copy = leaf
            if leaf.function == 1 {
                copy.ebx = (copy.ebx & 0x00FF_FFFF) | ((apicID & 0xFF) << 24)
            } else if leaf.function == 0xB || leaf.function == 0x1F {
                copy.edx = apicID
            }
            return copy
        }
    }
}
