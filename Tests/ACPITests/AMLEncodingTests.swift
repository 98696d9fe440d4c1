import Testing
@testable import ACPI

@Suite("AML encoding (ACPI 6.4 §20.2)")
struct AMLEncodingTests {
    /// (bytes following the PkgLength, expected encoding).
    static let packageLengthBoundaries: [(Int, [UInt8])] = [
        (0, [0x01]),
        (62, [0x3F]),  // largest 1-byte value, 63
        (63, [0x41, 0x04]),  // 65 = 0x041
        (0xFFD, [0x4F, 0xFF]),  // largest 2-byte value, 0xFFF
        (0xFFE, [0x81, 0x00, 0x01]),  // 0x1001
        (0xF_FFFC, [0x8F, 0xFF, 0xFF]),  // largest 3-byte value, 0xFFFFF
        (0xF_FFFD, [0xC1, 0x00, 0x00, 0x01]),  // 0x100001
        (0xFFF_FFFB, [0xCF, 0xFF, 0xFF, 0xFF]),  // largest 4-byte value, 0xFFFFFFF
    ]

    @Test(arguments: packageLengthBoundaries)
    func packageLengthUsesOneToFourBytesAtTheBoundaries(contentLength: Int, expected: [UInt8]) throws {
        let encoded = try AML.packageLength(contentLength: contentLength)
        #expect(encoded == expected)
        guard contentLength <= 1 << 21 else { return }  // the decoder needs the bytes to exist
        let decoded = try AMLDecoder.packageLength(in: encoded + [UInt8](repeating: 0, count: contentLength), at: 0)
        #expect(decoded.value == contentLength + encoded.count)
        #expect(decoded.byteCount == encoded.count)
    }

    @Test func packageLengthBeyond28BitsIsUnencodable() {
        #expect(throws: ACPIError.self) { try AML.packageLength(contentLength: 0xFFF_FFFC) }
        #expect(throws: ACPIError.self) { try AML.packageLength(contentLength: -1) }
    }

    @Test func namesEncodeWithRootDualAndMultiPrefixesAndPadding() throws {
        #expect(try AML.nameString("_HID") == Array("_HID".utf8))
        #expect(try AML.nameString("_S5") == Array("_S5_".utf8))
        #expect(try AML.nameString("\\_S5") == [0x5C] + Array("_S5_".utf8))
        #expect(try AML.nameString("\\_SB.VMOD") == [0x5C, 0x2E] + Array("_SB_VMOD".utf8))
        #expect(try AML.nameString("\\_SB.VMOD.VMBS") == [0x5C, 0x2F, 3] + Array("_SB_VMODVMBS".utf8))
        #expect(try AML.nameString("^^PCI0") == [0x5E, 0x5E] + Array("PCI0".utf8))
        #expect(try AML.nameString("\\") == [0x5C, 0x00])
    }

    @Test(arguments: ["", "TOOLONG", "vmbs", "1ABC", "\\_SB..X", "A-B"])
    func malformedNamesAreRejected(name: String) {
        #expect(throws: ACPIError.self) { try AML.nameString(name) }
    }

    @Test func integersPickTheShortestEncoding() {
        #expect(AML.integer(0) == [0x00])
        #expect(AML.integer(1) == [0x01])
        #expect(AML.integer(.max) == [0xFF])
        #expect(AML.integer(0x0F) == [0x0A, 0x0F])
        #expect(AML.integer(0x3F8) == [0x0B, 0xF8, 0x03])
        #expect(AML.integer(0xFEC0_0000) == [0x0C, 0x00, 0x00, 0xC0, 0xFE])
        #expect(AML.integer(0x1_0000_0000) == [0x0E, 0, 0, 0, 0, 1, 0, 0, 0])
    }

    @Test func stringsAreNulTerminatedASCII() throws {
        #expect(try AML.string("VMBus") == [0x0D, 0x56, 0x4D, 0x42, 0x75, 0x73, 0x00])
        #expect(throws: ACPIError.self) { try AML.string("caf\u{E9}") }
        #expect(throws: ACPIError.self) { try AML.string("a\u{0}b") }
    }

    @Test func packageCarriesItsElementCount() throws {
        #expect(try AML.package([AML.integer(5), AML.zero, AML.zero, AML.zero]) == [0x12, 0x07, 0x04, 0x0A, 0x05, 0, 0, 0])
        #expect(throws: ACPIError.self) { try AML.package([[UInt8]](repeating: AML.zero, count: 256)) }
    }

    @Test func bufferIsSizedByItsContents() throws {
        #expect(try AML.buffer([0x79, 0x87]) == [0x11, 0x05, 0x0A, 0x02, 0x79, 0x87])
    }

    @Test func methodEncodesFlagsAndBody() throws {
        let method = try AML.method("_STA", [AML.return(AML.integer(0x0F))])
        #expect(method == [0x14, 0x09] + Array("_STA".utf8) + [0x00, 0xA4, 0x0A, 0x0F])
        let serialized = try AML.method("_DSM", arguments: 4, serialized: true, [])
        #expect(serialized[6] == 0x0C)
        #expect(throws: ACPIError.self) { try AML.method("_X", arguments: 8, []) }
    }

    @Test func deviceAndScopeUseTheirOpcodes() throws {
        #expect(try AML.device("COM1", []).prefix(3) == [0x5B, 0x82, 0x05])
        #expect(try AML.scope("\\_SB", []).prefix(3) == [0x10, 0x06, 0x5C])
        #expect(try AML.name("_UID", AML.one) == [0x08] + Array("_UID".utf8) + [0x01])
    }

    @Test func eisaIDCompressesPNP0501To0x0105D041() throws {
        #expect(try EISAID.encode("PNP0501") == 0x0105_D041)
        #expect(try AML.eisaID("PNP0501") == [0x0C, 0x41, 0xD0, 0x05, 0x01])
        #expect(EISAID.decode(0x0105_D041) == "PNP0501")
        #expect(EISAID.decode(try EISAID.encode("PNP0A03")) == "PNP0A03")
    }

    @Test(arguments: ["PNP050", "pnp0501", "PNP050G", "ACPI0004"])
    func malformedEISAIDsAreRejected(id: String) {
        #expect(throws: ACPIError.self) { try EISAID.encode(id) }
    }

    @Test func endTagChecksumMakesTheTemplateSumToZero() {
        #expect(ResourceTemplate.encode([]) == [0x79, 0x87])
        let template = ResourceTemplate.encode([.irq(mask: 0x10)])
        #expect(template.reduce(0, &+) == 0)
    }

    @Test func ioAndIRQNoFlagsDescriptorsMatchTheSpecLayout() {
        #expect(ResourceDescriptor.io(.fixed(base: 0x3F8, length: 8)).encoded
                == [0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08])
        #expect(ResourceDescriptor.irq(mask: 1 << 4).encoded == [0x22, 0x10, 0x00])
    }

    @Test func qwordMemoryIs46BytesWithFixedBounds() throws {
        let descriptor = ResourceDescriptor.qwordMemory(.mmio(0xF800_0000..<0xFC00_0000))
        let bytes = descriptor.encoded
        #expect(bytes.count == 46)
        #expect(Array(bytes.prefix(6)) == [0x8A, 0x2B, 0x00, 0x00, 0x0D, 0x01])
        #expect(try ResourceTemplate.decode(ResourceTemplate.encode([descriptor])) == [descriptor])
    }
}
