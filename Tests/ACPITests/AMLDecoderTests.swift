import Testing
@testable import ACPI

@Suite("AML decoder")
struct AMLDecoderTests {
    @Test func relativeNamesResolveAgainstTheEnclosingScope() throws {
        let aml = try AML.scope("\\_SB", [
            AML.device("PCI0", [
                AML.name("_ADR", AML.zero),
                AML.device("^ISA", [AML.name("_UID", AML.integer(7))]),
            ]),
        ])
        let root = try AMLDecoder.decode(aml)
        #expect(root.value(at: "\\_SB.PCI0._ADR") == .integer(0))
        #expect(root.value(at: "\\_SB.ISA._UID") == .integer(7))
        #expect(root.node(at: "\\_SB")?.kind == .scope)
    }

    @Test func packagesNestAndKeepReferences() throws {
        let aml = try AML.name("PKG", AML.package([
            AML.string("a"), AML.package([AML.integer(0x1234)]), AML.nameString("\\_SB.PCI0"),
            AML.buffer([1, 2, 3]),
        ]))
        #expect(try AMLDecoder.decode(aml).value(at: "PKG") == .package([
            .string("a"), .package([.integer(0x1234)]), .reference("\\_SB_.PCI0"), .buffer([1, 2, 3]),
        ]))
    }

    @Test func bufferShorterThanItsDeclaredSizeIsZeroFilled() throws {
        let aml: [UInt8] = [0x08] + Array("BUFF".utf8) + [0x11, 0x05, 0x0A, 0x04, 0xAA, 0xBB]
        #expect(try AMLDecoder.decode(aml).value(at: "BUFF") == .buffer([0xAA, 0xBB, 0, 0]))
    }

    @Test func methodsWithoutAConstantReturnHaveNoValue() throws {
        let aml = try AML.method("_PS0", [])
        let root = try AMLDecoder.decode(aml)
        #expect(root.node(at: "_PS0") != nil)
        #expect(root.value(at: "_PS0") == nil)
    }

    @Test func packageLengthPastItsParentIsAnError() {
        let aml: [UInt8] = [0x10, 0x3F, 0x5C, 0x00]
        #expect(throws: AMLDecodeError.self) { try AMLDecoder.decode(aml) }
    }

    @Test func unsupportedOpcodesAreErrorsNotTraps() {
        #expect(throws: AMLDecodeError.self) { try AMLDecoder.decode([0x70, 0x01, 0x60]) }
    }

    @Test func deepNestingIsBounded() throws {
        var aml = try AML.name("LEAF", AML.zero)
        for _ in 0..<100 { aml = try AML.scope("S", [aml]) }
        #expect(throws: AMLDecodeError.self) { try AMLDecoder.decode(aml) }
    }

    @Test func tableWithABadChecksumIsRejected() throws {
        var table = Array(try #require(try ACPITables.build(processorCount: 1, baseAddress: 0xE_0000).table("DSDT")))
        table[40] ^= 0xFF
        #expect(throws: AMLDecodeError.self) { try AMLDecoder.decode(table: table) }
    }

    @Test func hostileBytesNeverTrap() throws {
        let valid = Array(try #require(try ACPITables.build(processorCount: 2, baseAddress: 0xE_0000).table("DSDT")))
            .dropFirst(36)
        var state: UInt64 = 0x1234_5678
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        for round in 0..<3000 {
            var bytes = Array(valid)
            if round % 4 == 0 { bytes = Array(bytes.prefix(Int(next() % UInt64(bytes.count)))) }
            for _ in 0..<(1 + Int(next() % 6)) where !bytes.isEmpty {
                bytes[Int(next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: next())
            }
            _ = try? AMLDecoder.decode(bytes)
            if let crs = try? AMLDecoder.decode(bytes).value(at: "\\_SB.COM1._CRS")?.buffer {
                _ = try? ResourceTemplate.decode(crs)
            }
        }
        for length in 0..<64 {
            let random = (0..<length).map { _ in UInt8(truncatingIfNeeded: next()) }
            _ = try? AMLDecoder.decode(random)
            _ = try? ResourceTemplate.decode(random)
            _ = try? AMLDecoder.packageLength(in: random, at: 0)
        }
    }
}
