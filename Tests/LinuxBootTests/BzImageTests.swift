import HyperV
import Testing
@testable import LinuxBoot
import TestSupport

@Suite("bzImage setup header (Docs/hyperv-interface.md §13.5)")
struct BzImageTests {
    @Test func parsesTheSetupHeaderFields() throws {
        let synthetic = SyntheticBzImage()
        let image = try BzImage(parsing: synthetic.bytes)
        #expect(image.protocolVersion == 0x020F)
        #expect(image.setupSectors == 0x1B)
        #expect(image.kernelOffset == 0x1C * 512)
        #expect(image.setupHeaderEnd == 0x26C)
        #expect(image.loadFlags == .loadedHigh)
        #expect(image.xLoadFlags.contains([.kernel64, .canBeLoadedAbove4G]))
        #expect(image.kernelAlignment == 0x20_0000)
        #expect(image.isRelocatable)
        #expect(image.preferredAddress == 0x100_0000)
        #expect(image.initSize == 0x200_0000)
        #expect(image.commandLineSize == 2047)
        #expect(image.initrdAddressMax == 0x7FFF_FFFF)
    }

    @Test func protectedModeKernelStartsAfterSetupSectorsPlusBootSector() throws {
        let synthetic = SyntheticBzImage()
        let image = try BzImage(parsing: synthetic.bytes)
        #expect(image.kernelSize == synthetic.payloadSize)
        #expect(Array(image.kernel.prefix(4)) == (0..<4).map(SyntheticBzImage.payloadByte))
    }

    @Test func setupSectorsZeroMeansFour() throws {
        var synthetic = SyntheticBzImage()
        synthetic.setupSectors = 0
        let image = try BzImage(parsing: synthetic.bytes)
        #expect(image.setupSectors == 4)
        #expect(image.kernelOffset == 5 * 512)
    }

    @Test func keepsTheRawHeaderBytesUpToTheLengthInByte0x201() throws {
        let bytes = SyntheticBzImage().bytes
        let image = try BzImage(parsing: bytes)
        #expect(Array(image.setupHeader) == Array(bytes[0x1F1..<0x26C]))
    }

    @Test func rejectsAFileWithoutHdrSMagic() {
        var synthetic = SyntheticBzImage()
        synthetic.magic = 0x4C45_7F00
        #expect(throws: LinuxBootError.notBzImage("no \"HdrS\" magic at 0x202")) { try BzImage(parsing: synthetic.bytes) }
    }

    @Test func rejectsAFileTooShortForAHeader() {
        #expect(throws: LinuxBootError.self) { try BzImage(parsing: [UInt8].zeros(0x200)) }
    }

    @Test(arguments: [UInt16(0x0200), UInt16(0x0206), UInt16(0x020B)])
    func rejectsProtocolsOlderThan2_12(version: UInt16) {
        var synthetic = SyntheticBzImage()
        synthetic.version = version
        #expect(throws: LinuxBootError.unsupportedProtocol(version: version)) { try BzImage(parsing: synthetic.bytes) }
    }

    @Test func rejectsAKernelWithoutXLFKernel64() {
        var synthetic = SyntheticBzImage()
        synthetic.xLoadFlags = 0x1E
        #expect(throws: LinuxBootError.not64BitCapable) { try BzImage(parsing: synthetic.bytes) }
    }

    @Test func rejectsAZImageThatLoadsLow() {
        var synthetic = SyntheticBzImage()
        synthetic.loadFlags = 0
        #expect(throws: LinuxBootError.self) { try BzImage(parsing: synthetic.bytes) }
    }

    @Test func rejectsAFileThatEndsInsideTheSetupHeader() {
        let bytes = Array(SyntheticBzImage().bytes.prefix(0x260))
        #expect(throws: LinuxBootError.self) { try BzImage(parsing: bytes) }
    }

    @Test func rejectsAFileThatEndsBeforeTheProtectedModeKernel() {
        let synthetic = SyntheticBzImage()
        let bytes = Array(synthetic.bytes.prefix(synthetic.kernelOffset))
        #expect(throws: LinuxBootError.self) { try BzImage(parsing: bytes) }
    }

    @Test func rejectsAHeaderTooShortToHoldInitSize() {
        var synthetic = SyntheticBzImage()
        synthetic.headerLengthByte = 0x50
        #expect(throws: LinuxBootError.self) { try BzImage(parsing: synthetic.bytes) }
    }

    @Test(arguments: [UInt32(0), UInt32(0x1001), UInt32(0x30_0000), UInt32(0x800)])
    func rejectsARelocatableKernelWithAnImpossibleAlignment(alignment: UInt32) {
        var synthetic = SyntheticBzImage()
        synthetic.kernelAlignment = alignment
        #expect(throws: LinuxBootError.self) { try BzImage(parsing: synthetic.bytes) }
    }

    @Test func hostileBytesNeverTrap() {
        var generator = SeededGenerator(seed: 0x5EED)
        let valid = SyntheticBzImage().bytes
        for round in 0..<2000 {
            var bytes = valid
            if round % 3 == 0 { bytes = Array(bytes.prefix(Int(generator.next() % UInt64(bytes.count)))) }
            for _ in 0..<8 {
                guard !bytes.isEmpty else { break }
                let offset = 0x1F0 + Int(generator.next() % 0x80)
                if offset < bytes.count { bytes[offset] = UInt8(truncatingIfNeeded: generator.next()) }
            }
            if let image = try? BzImage(parsing: bytes) {
                #expect(image.kernelOffset < bytes.count)
                #expect(image.xLoadFlags.contains(.kernel64))
            }
        }
    }
}
