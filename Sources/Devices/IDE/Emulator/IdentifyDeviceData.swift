/// The 512 bytes IDENTIFY DEVICE returns (ATA/ATAPI-7 volume 1, table "IDENTIFY DEVICE
/// data"), built from the disk's configuration and current settings. The words Linux reads
/// are named after the include/linux/ata.h helper that reads them.
public struct IdentifyDeviceData: Equatable, Sendable {
    /// The 256 words, host order.
    public private(set) var words: [UInt16]

    /// The current state that IDENTIFY reports.
    struct Settings {
        var sectors: UInt64
        var defaultGeometry: CHSGeometry?
        var currentGeometry: CHSGeometry?
        var multipleSectors: Int
        var writeCacheEnabled: Bool
    }

    init(configuration: IDEDiskConfiguration, settings: Settings) {
        var words = [UInt16](repeating: 0, count: 256)
        let sectors28 = min(settings.sectors, 0x0FFF_FFFF)

        // Word 0: an ATA device (bit 15 clear, ata_id_is_ata), fixed media.
        words[0] = 0x0040
        if let geometry = settings.defaultGeometry {
            words[1] = UInt16(geometry.cylinders)
            words[3] = UInt16(geometry.heads)
            words[6] = UInt16(geometry.sectorsPerTrack)
        }
        // Word 2: IDENTIFY is complete and no spin-up SET FEATURES is needed (not 0x37C8/0x738C,
        // which make ata_dev_read_id issue SETFEATURES_SPINUP).
        words[2] = 0xC837
        Self.store(configuration.serialNumber, into: &words, at: 10)
        Self.store(configuration.firmwareRevision, into: &words, at: 23)
        Self.store(configuration.model, into: &words, at: 27)
        // Word 47: 80h in bits 15:8, the largest READ/WRITE MULTIPLE block in bits 7:0.
        words[47] = 0x8000 | UInt16(configuration.maximumMultipleSectors)
        // Word 49: IORDY supported (11) and may be disabled (10), LBA (9); no DMA (8 clear).
        words[49] = 0x0E00
        // Word 50: bit 14 shall be one.
        words[50] = 0x4000
        // Word 51: PIO mode 2 timing, for hosts that predate word 64.
        words[51] = 0x0200
        // Word 53: words 54-58 (if a CHS translation is current), 64-70 and 88 are valid.
        words[53] = 0x0006 | (settings.currentGeometry == nil ? 0 : 0x0001)
        if let geometry = settings.currentGeometry {
            words[54] = UInt16(geometry.cylinders)
            words[55] = UInt16(geometry.heads)
            words[56] = UInt16(geometry.sectorsPerTrack)
            words[57] = UInt16(truncatingIfNeeded: geometry.capacity)
            words[58] = UInt16(truncatingIfNeeded: geometry.capacity >> 16)
        }
        // Word 59: bit 8, the multiple setting in bits 7:0 is valid (0: multiple mode disabled).
        words[59] = 0x0100 | UInt16(settings.multipleSectors)
        // Words 60-61: sectors addressable by 28-bit commands (ata_id_n_sectors without LBA48).
        words[60] = UInt16(truncatingIfNeeded: sectors28)
        words[61] = UInt16(truncatingIfNeeded: sectors28 >> 16)
        // Word 63: no multiword DMA. Word 64: PIO modes 3 and 4 besides 0-2 (ata_id_xfermask).
        words[64] = 0x0003
        // Words 67-68: minimum PIO cycle times without and with IORDY, in ns (PIO 4: 120).
        words[67] = 120
        words[68] = 120
        // Word 80: major versions ATA/ATAPI-4 to -7 (ata_id_major_version is 7).
        words[80] = 0x00F0
        // Words 82-84 supported, 85-87 enabled: NOP (82.14), write cache (82.5), FLUSH CACHE
        // (83.12), FLUSH CACHE EXT (83.13), 48-bit address (83.10); bit 14 of 83, 84 and 87
        // marks the words valid (ata_id_has_lba48, ata_id_has_flush, ata_id_has_wcache read them).
        words[82] = 0x4020
        words[83] = 0x7400
        words[84] = 0x4000
        words[85] = 0x4000 | (settings.writeCacheEnabled ? 0x0020 : 0)
        words[86] = 0x3400
        words[87] = 0x4000
        // Word 88: no Ultra DMA.
        // Word 93: hardware reset result: device 0 passed diagnostics (bit 3), numbered by
        // jumper (bits 2:1 = 01), responds for an absent device 1 (bit 6); bit 14 shall be one.
        words[93] = 0x404B
        // Words 100-103: sectors addressable by 48-bit commands.
        for index in 0..<4 { words[100 + index] = UInt16(truncatingIfNeeded: settings.sectors >> (16 * UInt64(index))) }
        // Word 106: valid (bit 14), one 512-byte logical sector per physical sector.
        words[106] = 0x4000
        // Word 255: signature A5h and the checksum that makes all 512 bytes sum to zero.
        words[255] = 0x00A5
        var sum: UInt8 = 0
        for word in words {
            sum &+= UInt8(truncatingIfNeeded: word)
            sum &+= UInt8(truncatingIfNeeded: word >> 8)
        }
        words[255] |= UInt16(0 &- sum) << 8
        self.words = words
    }

    /// The data as the data register delivers it: each word little-endian.
    public var bytes: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: words.count * 2)
        for (index, word) in words.enumerated() {
            bytes[2 * index] = UInt8(truncatingIfNeeded: word)
            bytes[2 * index + 1] = UInt8(truncatingIfNeeded: word >> 8)
        }
        return bytes
    }

    /// An ATA string occupies whole words, its first character in each word's high byte.
    private static func store(_ string: ATAString, into words: inout [UInt16], at first: Int) {
        for pair in 0..<(string.bytes.count / 2) {
            words[first + pair] = UInt16(string.bytes[2 * pair]) << 8 | UInt16(string.bytes[2 * pair + 1])
        }
    }
}
