import HyperV
import HypervisorInterface
import Testing

@Suite("CPUID leaves (Docs/hyperv-interface.md §1)")
struct CPUIDTests {
    let leaves = HvCPUID.hypervisorLeaves(processorCount: 3)

    func leaf(_ function: UInt32) -> CPUIDLeaf? { leaves.first { $0.function == function } }

    @Test func vendorLeafCarriesMicrosoftHvSignatureAndMaximumLeaf() throws {
        let vendor = try #require(leaf(0x4000_0000))
        #expect(vendor.eax == 0x4000_0006)
        #expect(vendor.eax >= 0x4000_0005 && vendor.eax <= 0x4000_FFFF)
        #expect(vendor.ebx == 0x7263_694D && vendor.ecx == 0x666F_736F && vendor.edx == 0x7648_2074)
    }

    @Test func interfaceLeafIsHv1() throws {
        #expect(try #require(leaf(0x4000_0001)).eax == 0x3123_7648)
    }

    @Test func featuresLeafIsTheRecommendedSet() throws {
        let features = try #require(leaf(0x4000_0003))
        #expect(features.eax == 0x8A66)
        #expect(features.ebx == 0x30)
        #expect(features.edx == 0x500)
        // Detection needs HYPERCALL (bit 5) and VP_INDEX (bit 6).
        #expect(features.eax & 0x60 == 0x60)
        // Never TIME_REF_COUNT without REFERENCE_TSC (Docs/hyperv-interface.md §1.3), never
        // synthetic timers.
        #expect(features.eax & (1 << 9) != 0 && features.eax & (1 << 3) == 0)
        // Never AccessPartitionId, CpuManagement, extended hypercalls or isolation
        // (Docs/hyperv-interface.md §1.3).
        #expect(features.ebx & PartitionPrivilegesHigh.forbidden.rawValue == 0)
    }

    @Test func recommendationsAreOnlyDeprecateAutoEOI() throws {
        let hints = try #require(leaf(0x4000_0004))
        #expect(hints.eax == 0x200)
        #expect(hints.ebx == 0xFFFF_FFFF)
    }

    @Test func limitsLeafReportsTheProcessorCount() throws {
        let limits = try #require(leaf(0x4000_0005))
        #expect(limits.eax == 3 && limits.ebx == 3)
    }

    @Test func leaves81And82AreExplicitZeros() throws {
        for function: UInt32 in [0x4000_0081, 0x4000_0082] {
            let zero = try #require(leaf(function))
            #expect(zero.eax == 0 && zero.ebx == 0 && zero.ecx == 0 && zero.edx == 0)
        }
    }

    @Test func partitionLeavesDropEveryKVMSignature() {
        let host = [
            CPUIDLeaf(function: 0, eax: 0xD),
            CPUIDLeaf(function: 1, ecx: 0x0020_0000),
            CPUIDLeaf(function: 0x4000_0000, eax: 0x4000_0001, ebx: 0x4B4D_564B, ecx: 0x564B_4D56, edx: 0x4D),
            CPUIDLeaf(function: 0x4000_0100, eax: 0x4000_0101, ebx: 0x4B4D_564B),
            CPUIDLeaf(function: 0x8000_0007),
        ]
        let leaves = HvCPUID.partitionLeaves(host: host, processorCount: 1)
        #expect(!leaves.contains { $0.function == 0x4000_0100 })
        #expect(!leaves.contains { $0.ebx == 0x4B4D_564B })
        #expect(leaves.filter { $0.function == 0x4000_0000 }.count == 1)
    }

    @Test func partitionLeavesSetHypervisorPresentAndInvariantTSC() throws {
        let leaves = HvCPUID.partitionLeaves(host: [CPUIDLeaf(function: 1), CPUIDLeaf(function: 0x8000_0007)],
                                             processorCount: 1)
        #expect(try #require(leaves.first { $0.function == 1 }).ecx & (1 << 31) != 0)
        #expect(try #require(leaves.first { $0.function == 0x8000_0007 }).edx & (1 << 8) != 0)
    }

    @Test func processorLeavesCarryEachAPICID() throws {
        let leaves = HvCPUID.processorLeaves([CPUIDLeaf(function: 1, ebx: 0x1234_5678), CPUIDLeaf(function: 0xB)], apicID: 3)
        #expect(try #require(leaves.first { $0.function == 1 }).ebx == 0x0334_5678)
        #expect(try #require(leaves.first { $0.function == 0xB }).edx == 3)
    }
}
