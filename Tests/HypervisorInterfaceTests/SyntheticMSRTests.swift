import GuestMemory
import HyperV
import HypervisorInterface
import Testing

@Suite("Synthetic MSRs (Docs/hyperv-interface.md §2)")
struct SyntheticMSRTests {
    @Test func guestOSIDReadsBackWhatWasWritten() throws {
        let fixture = try Fixture()
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.guestOSID.rawValue) == 0)
        #expect(fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.guestOSID.rawValue, value: 0x8100_0006_01C0_0000))
        #expect(fixture.partition.readMSR(vp: 1, index: SyntheticMSR.guestOSID.rawValue) == 0x8100_0006_01C0_0000)
    }

    @Test func hypercallEnableWritesTheStubAndReadsBackEnabled() throws {
        let fixture = try Fixture()
        _ = fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.guestOSID.rawValue, value: 1)
        #expect(fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.hypercall.rawValue, value: 0x20000 | 1))
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.hypercall.rawValue) == 0x20001)
        let page = try fixture.memory.read(at: GuestPhysicalAddress(0x20000), count: 4096)
        #expect(Array(page[0..<4]) == [0xF3, 0x0F, 0x1E, 0xFA], "the page starts with ENDBR64")
        #expect(page == HvHypercallPage.contents())
        #expect(page[HvHypercallPage.signalOutOffset] == 0xE7 && page[HvHypercallPage.signalOutOffset + 1] == 0xE6)
        #expect(page[HvHypercallPage.hypercallOutOffset] == 0xE6 && page[HvHypercallPage.hypercallOutOffset + 1] == 0xE2)
        #expect(page[4000] == 0xCC)
    }

    @Test func hypercallCannotBeEnabledBeforeTheGuestOSID() throws {
        let fixture = try Fixture()
        #expect(fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.hypercall.rawValue, value: 0x20001))
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.hypercall.rawValue) == 0x20000)
        #expect(try fixture.memory.read(at: GuestPhysicalAddress(0x20000), count: 4) == [0, 0, 0, 0])
    }

    @Test func hypercallPageOutsideRAMFaults() throws {
        let fixture = try Fixture()
        _ = fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.guestOSID.rawValue, value: 1)
        #expect(!fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.hypercall.rawValue, value: UInt64(Fixture.memorySize) | 1))
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.hypercall.rawValue) == 0)
    }

    @Test func lockedHypercallMSRIgnoresFurtherWrites() throws {
        let fixture = try Fixture()
        _ = fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.guestOSID.rawValue, value: 1)
        _ = fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.hypercall.rawValue, value: 0x20000 | 0b11)
        #expect(fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.hypercall.rawValue, value: 0x30001))
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.hypercall.rawValue) == 0x20003)
    }

    @Test func vpIndexIsPerProcessorAndReadOnly() throws {
        let fixture = try Fixture()
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.vpIndex.rawValue) == 0)
        #expect(fixture.partition.readMSR(vp: 1, index: SyntheticMSR.vpIndex.rawValue) == 1)
        #expect(!fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.vpIndex.rawValue, value: 5))
    }

    @Test func timeReferenceCountIsReadOnlyAndAdvancesIn100nsUnits() throws {
        let fixture = try Fixture()
        let first = try #require(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.timeReferenceCount.rawValue))
        fixture.environment.tsc.wrappingAdd(Fixture.tscHz, ordering: .relaxed)  // one second later
        let second = try #require(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.timeReferenceCount.rawValue))
        #expect(second - first >= 9_999_999 && second - first <= 10_000_001)
        #expect(!fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.timeReferenceCount.rawValue, value: 0))
    }

    @Test func referenceTSCPageAgreesWithTimeReferenceCount() throws {
        let fixture = try Fixture()
        #expect(fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.referenceTSC.rawValue, value: 0x30000 | 1))
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.referenceTSC.rawValue) == 0x30001)
        let page = GuestPhysicalAddress(0x30000)
        #expect(try fixture.memory.load(UInt32.self, at: page) == 1, "sequence is valid (non-zero)")
        let scale = try fixture.memory.load(UInt64.self, at: page.advanced(by: 8)!)
        let offset = try fixture.memory.load(Int64.self, at: page.advanced(by: 16)!)
        #expect(scale == ReferenceTSCPage.scale(tscFrequencyHz: Fixture.tscHz))
        // The guest TSC is the host TSC plus the partition's offset.
        let hostTSC = fixture.environment.hostTimestampCounter()
        let guestTSC = hostTSC &+ fixture.partition.time.guestTSCOffset
        let fromPage = ReferenceTSCPage.referenceTime(tsc: guestTSC, scale: scale, offset: offset)
        let fromMSR = try #require(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.timeReferenceCount.rawValue))
        #expect(fromPage == fromMSR)
    }

    /// Docs/hyperv-interface.md §5.2: TIME_REF_COUNT and the TSC page are one clock. When the host
    /// hypervisor moves the guest TSC's offset (a nested KVM does), the processor's own TSC decides
    /// both.
    @Test func timeReferenceCountFollowsTheProcessorsOwnTSC() throws {
        let fixture = try Fixture()
        let drifted = fixture.environment.hostTimestampCounter() &+ fixture.partition.time.guestTSCOffset &+ Fixture.tscHz / 100
        fixture.environment.guestTSC.withLock { $0[0] = drifted }
        let fromMSR = try #require(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.timeReferenceCount.rawValue))
        let time = fixture.partition.time
        #expect(fromMSR == ReferenceTSCPage.referenceTime(tsc: drifted, scale: time.scale, offset: time.referenceOffset))
        #expect(fromMSR == fixture.partition.referenceTime() + 100_000, "10 ms ahead of the host-derived time")
    }

    @Test func frequencyMSRsAreReadOnlyHertz() throws {
        let fixture = try Fixture()
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.tscFrequency.rawValue) == Fixture.tscHz)
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.apicFrequency.rawValue) == 1_000_000_000)
        #expect(!fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.tscFrequency.rawValue, value: 1))
        #expect(!fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.apicFrequency.rawValue, value: 1))
    }

    @Test func vpAssistPageIsAcceptedPerProcessor() throws {
        let fixture = try Fixture()
        #expect(fixture.partition.writeMSR(vp: 1, index: SyntheticMSR.vpAssistPage.rawValue, value: 0x40001))
        #expect(fixture.partition.readMSR(vp: 1, index: SyntheticMSR.vpAssistPage.rawValue) == 0x40001)
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.vpAssistPage.rawValue) == 0)
        #expect(!fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.vpAssistPage.rawValue, value: 0xFFFF_F000 | 1))
    }

    @Test func synicRegistersReadBackAndVersionIsOne() throws {
        let fixture = try Fixture()
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.synicVersion.rawValue) == 1)
        #expect(!fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.synicVersion.rawValue, value: 2))
        for sint in 0..<16 {
            #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.sint(sint).rawValue) == 0x10000, "reset is masked")
        }
        fixture.enableSynIC()
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.synicControl.rawValue) == 1)
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.synicMessagePage.rawValue) == 0x10001)
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.synicEventFlagsPage.rawValue) == 0x11001)
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.sint(2).rawValue) == 0xF3)
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.endOfMessage.rawValue) == 0)
        #expect(fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.endOfMessage.rawValue, value: 0))
    }

    @Test func synicPagesOutsideRAMFault() throws {
        let fixture = try Fixture()
        let outside = UInt64(Fixture.memorySize) | 1
        #expect(!fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.synicMessagePage.rawValue, value: outside))
        #expect(!fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.synicEventFlagsPage.rawValue, value: outside))
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.synicMessagePage.rawValue) == 0)
    }

    @Test func enablingAnOverlayPageZeroesIt() throws {
        let fixture = try Fixture()
        try fixture.memory.fill(0xAA, at: GuestPhysicalAddress(0x10000), count: 4096)
        _ = fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.synicMessagePage.rawValue, value: 0x10001)
        #expect(try fixture.memory.read(at: GuestPhysicalAddress(0x10000), count: 4096).allSatisfy { $0 == 0 })
    }

    @Test func sintReservedBitsAreDropped() throws {
        let fixture = try Fixture()
        #expect(fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.sint(2).rawValue, value: 0xFFFF_FFFF_FFFF_FFFF))
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.sint(2).rawValue) == 0x700FF)
    }

    @Test func synicStateIsReportedToTheEnvironment() throws {
        let fixture = try Fixture()
        fixture.enableSynIC(vp: 1)
        let pages = try #require(fixture.environment.pages(vp: 1))
        #expect(pages == SynICPages(enabled: true, messagePage: 0x10000, eventFlagsPage: 0x11000))
        #expect(fixture.environment.sint(vp: 1, 2) == .init(vector: 0xF3, interruptsEnabled: true))
    }

    @Test func crashControlReportsCapabilitiesAndTheCrash() throws {
        let fixture = try Fixture()
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.crashControl.rawValue) == (1 << 63) | (1 << 62))
        for parameter in 0..<5 {
            let msr = SyntheticMSR.crashParameter0.rawValue + UInt32(parameter)
            #expect(fixture.partition.writeMSR(vp: 0, index: msr, value: UInt64(parameter + 10)))
            #expect(fixture.partition.readMSR(vp: 0, index: msr) == UInt64(parameter + 10))
        }
        #expect(fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.crashControl.rawValue, value: 1 << 63))
        #expect(fixture.environment.crashes.first?.0 == [10, 11, 12, 13, 14])
    }

    @Test func tscInvariantControlAcceptsOne() throws {
        let fixture = try Fixture()
        #expect(fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.tscInvariantControl.rawValue, value: 1))
        #expect(fixture.partition.readMSR(vp: 0, index: SyntheticMSR.tscInvariantControl.rawValue) == 1)
    }

    @Test(arguments: [0x4000_0003, 0x4000_0010, 0x4000_0070, 0x4000_00B0, 0x4000_00F0, 0x4000_01FF] as [UInt32])
    func unknownSyntheticMSRsFault(_ index: UInt32) throws {
        let fixture = try Fixture()
        #expect(fixture.partition.readMSR(vp: 0, index: index) == nil)
        #expect(!fixture.partition.writeMSR(vp: 0, index: index, value: 0))
    }

    @Test func msrsOutsideTheSyntheticRangeOrOfUnknownProcessorsFault() throws {
        let fixture = try Fixture()
        #expect(fixture.partition.readMSR(vp: 0, index: 0x1B) == nil)
        #expect(fixture.partition.readMSR(vp: 7, index: SyntheticMSR.vpIndex.rawValue) == nil)
        #expect(!fixture.partition.writeMSR(vp: -1, index: SyntheticMSR.guestOSID.rawValue, value: 1))
    }
}
