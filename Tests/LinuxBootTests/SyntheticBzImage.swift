import HyperV

/// A fake bzImage: a setup header with chosen fields and a recognisable payload where the
/// protected-mode kernel would be.
struct SyntheticBzImage {
    var magic: UInt32 = 0x5372_6448  // "HdrS"
    var version: UInt16 = 0x020F
    var headerLengthByte: UInt8 = 0x6A  // header ends at 0x26C, as in Linux 6.1
    var setupSectors: UInt8 = 0x1B
    var loadFlags: UInt8 = 0x01
    var xLoadFlags: UInt16 = 0x1F  // KERNEL_64 | ABOVE_4G | EFI handovers | EFI kexec
    var kernelAlignment: UInt32 = 0x20_0000
    var relocatable: UInt8 = 1
    var preferredAddress: UInt64 = 0x100_0000
    var initSize: UInt32 = 0x200_0000
    var commandLineSize: UInt32 = 2047
    var initrdAddressMax: UInt32 = 0x7FFF_FFFF
    var payloadSize = 0x3000

    /// The setup_sects value the parser should report.
    var effectiveSetupSectors: Int { setupSectors == 0 ? 4 : Int(setupSectors) }
    var kernelOffset: Int { (effectiveSetupSectors + 1) * 512 }

    static func payloadByte(_ index: Int) -> UInt8 { UInt8(truncatingIfNeeded: index &* 31 &+ 7) }

    var bytes: [UInt8] {
        var image = [UInt8].zeros(kernelOffset + payloadSize)
        image[0x1EF] = 0xFF  // the file's sentinel byte, which must not reach the zero page
        image[0x1F1] = setupSectors
        image.storeLittleEndian(UInt16(0xAA55), at: 0x1FE)
        image[0x200] = 0xEB
        image[0x201] = headerLengthByte
        image.storeLittleEndian(magic, at: 0x202)
        image.storeLittleEndian(version, at: 0x206)
        image[0x211] = loadFlags
        image.storeLittleEndian(initrdAddressMax, at: 0x22C)
        image.storeLittleEndian(kernelAlignment, at: 0x230)
        image[0x234] = relocatable
        image.storeLittleEndian(xLoadFlags, at: 0x236)
        image.storeLittleEndian(commandLineSize, at: 0x238)
        image.storeLittleEndian(preferredAddress, at: 0x258)
        image.storeLittleEndian(initSize, at: 0x260)
        for index in 0..<payloadSize { image[kernelOffset + index] = Self.payloadByte(index) }
        return image
    }
}
