import Testing
import VMBusProtocol
import TestSupport

@Suite("GUID wire format (Docs/hyperv-interface.md §6.4)")
struct GUIDTests {
    /// The class GUIDs of Docs/hyperv-interface.md §14: class GUID, text form, wire bytes.
    static let table: [(GUID, String, String)] = [
        (.shutdown, "0e0b6031-5213-4934-818b-38d90ced39db", "31600b0e13523449818b38d90ced39db"),
        (.timeSync, "9527e630-d0ae-497b-adce-e80ab0175caf", "30e62795aed07b49adcee80ab0175caf"),
        (.heartbeat, "57164f39-9115-4e78-ab55-382f3bd5422d", "394f16571591784eab55382f3bd5422d"),
        (.kvp, "a9a0f4e7-5a45-4d96-b827-8a841e8c03e6", "e7f4a0a9455a964db8278a841e8c03e6"),
        (.scsi, "ba6163d9-04a1-4d29-b605-72e2ffb1dc7f", "d96361baa104294db60572e2ffb1dc7f"),
        (.network, "f8615163-df3e-46c5-913f-f2d2f965ed0e", "635161f83edfc546913ff2d2f965ed0e"),
    ]

    @Test("Each well-known class GUID has its Docs/hyperv-interface.md §14 wire bytes", arguments: 0..<6)
    func knownClassWireBytes(index: Int) {
        let (guid, text, wire) = Self.table[index]
        #expect(hex(guid.wireBytes) == wire)
        #expect(guid.description == text)
        #expect(GUID(text) == guid)
    }

    @Test("Text parsing is case-insensitive and round-trips to lowercase")
    func textRoundTrip() {
        let guid = GUID("0E0B6031-5213-4934-818B-38D90CED39DB")
        #expect(guid == .shutdown)
        #expect(guid?.description == "0e0b6031-5213-4934-818b-38d90ced39db")
    }

    @Test(
        "Malformed text is rejected",
        arguments: [
            "", "0e0b6031-5213-4934-818b-38d90ced39d", "0e0b6031-5213-4934-818b-38d90ced39dbb",
            "0e0b6031x5213-4934-818b-38d90ced39db", "0e0b6031-5213-4934-818b-38d90ced39dg",
            "{0e0b6031-5213-4934-818b-38d90ced39db}", "0e0b60315213-4934-818b-38d90ced39db-",
            "0e0b6031-5213-4934-818b-38d90ced39dé",
        ])
    func malformedText(text: String) {
        #expect(GUID(text) == nil)
    }

    @Test("Wire bytes must be exactly 16")
    func wireByteCount() {
        let wire = GUID.network.wireBytes
        #expect(GUID(wireBytes: wire) == .network)
        #expect(GUID(wireBytes: Array(wire.prefix(15))) == nil)
        #expect(GUID(wireBytes: wire + [0]) == nil)
        #expect(GUID(wireBytes: []) == nil)
    }
}

@Suite("VMBus versions and constants (Docs/hyperv-interface.md §6.3, §7.1)")
struct VersionTests {
    @Test("Versions encode major << 16 | minor and are tried newest first")
    func versionEncoding() {
        #expect(VMBusVersion.v5_3.rawValue == 0x50003)
        #expect(VMBusVersion.v4_1.rawValue == 0x40001)
        #expect(VMBusVersion.v2_4.rawValue == 0x20004)
        #expect(VMBusVersion.v5_2.major == 5 && VMBusVersion.v5_2.minor == 2)
        #expect(VMBusVersion.supported == [.v5_3, .v5_2, .v5_1, .v5_0, .v4_1, .v4_0, .v3_0, .v2_4])
        #expect(VMBusVersion.supported == VMBusVersion.supported.sorted(by: >))
    }

    @Test("INITIATE_CONTACT uses connection ID 4 from version 5.0 on")
    func connectionID4Threshold() {
        #expect(VMBusVersion.v5_0.usesMessageConnectionID4)
        #expect(VMBusVersion.v5_3.usesMessageConnectionID4)
        #expect(!VMBusVersion.v4_1.usesMessageConnectionID4)
        #expect(!VMBusVersion.v2_4.usesMessageConnectionID4)
    }

    @Test("Transport constants match Docs/hyperv-interface.md §3.6, §6 and §7.1")
    func constants() {
        #expect(VMBusConstants.messageConnectionID.rawValue == 1)
        #expect(VMBusConstants.initiateContactConnectionID.rawValue == 4)
        #expect(VMBusConstants.messageSINT == 2)
        #expect(VMBusConstants.maximumMessagePayload == 240)
        #expect(VMBusConstants.maximumChildRelID == 2047)
        #expect(VMBusConstants.eventConnectionID(childRelID: 5).rawValue == 0x2005)
        // 26 PFNs fill a GPADL_HEADER and 28 a GPADL_BODY without exceeding 240 bytes.
        #expect(GPADLHeader.pfnOffset + VMBusConstants.gpadlHeaderMaximumPFNs * 8 <= 240)
        #expect(GPADLHeader.pfnOffset + (VMBusConstants.gpadlHeaderMaximumPFNs + 1) * 8 > 240)
        #expect(GPADLBody.pfnOffset + VMBusConstants.gpadlBodyMaximumPFNs * 8 == 240)
    }

    @Test("Page count is ⌈(offset + count) / 4096⌉ without overflow")
    func pageCount() {
        #expect(VMBusConstants.pageCount(byteOffset: 0, byteCount: 0) == 0)
        #expect(VMBusConstants.pageCount(byteOffset: 0, byteCount: 4096) == 1)
        #expect(VMBusConstants.pageCount(byteOffset: 1, byteCount: 4096) == 2)
        #expect(VMBusConstants.pageCount(byteOffset: 0, byteCount: 16 << 20) == 4096)
        #expect(VMBusConstants.pageCount(byteOffset: .max, byteCount: .max) == 2_097_152)
    }
}
