import Testing
import TestSupport
@testable import IDEEmulator

/// The words libata reads, as include/linux/ata.h decodes them.
private func word(_ bytes: [UInt8], _ index: Int) -> UInt16 { UInt16(bytes[2 * index]) | UInt16(bytes[2 * index + 1]) << 8 }

/// ata_id_string: each word holds two characters, the first in the high byte.
private func ataString(_ bytes: [UInt8], words: Range<Int>) -> String {
    String(decoding: words.flatMap { [UInt8(word(bytes, $0) >> 8), UInt8(word(bytes, $0) & 0xFF)] }, as: UTF8.self)
}

@Suite("IDENTIFY DEVICE")
struct IdentifyDeviceTests {
    /// Reads IDENTIFY DEVICE through the data register, polled as ata_dev_read_id does.
    private func identify(_ host: inout ATAHost) -> [UInt8] {
        host.issue(ATACommand.identifyDevice, count: 0)
        #expect(host.inb(statusPort) == statusDataRequest)
        let data = host.insw(dataPort, 256)
        #expect(host.inb(statusPort) == statusIdle, "DRQ falls after the one block")
        return data
    }

    @Test func identifyDataIsByteForByteTheATA7LayoutForAOneMillionSectorDisk() {
        var host = ATAHost(disk: TestDisk(sectors: 1_000_000))
        let data = identify(&host)
        #expect(data.count == 512)

        var expected = [UInt16](repeating: 0, count: 256)
        expected[0] = 0x0040
        expected[1] = 992
        expected[2] = 0xC837
        expected[3] = 16
        expected[6] = 63
        expected[47] = 0x8010
        expected[49] = 0x0E00
        expected[50] = 0x4000
        expected[51] = 0x0200
        expected[53] = 0x0007
        expected[54] = 992
        expected[55] = 16
        expected[56] = 63
        expected[57] = 0x4200  // 992 * 16 * 63 = 999936 = 0xF4200
        expected[58] = 0x000F
        expected[59] = 0x0110
        expected[60] = 0x4240  // 1000000 = 0xF4240
        expected[61] = 0x000F
        expected[64] = 0x0003
        expected[67] = 120
        expected[68] = 120
        expected[80] = 0x00F0
        expected[82] = 0x4020
        expected[83] = 0x7400
        expected[84] = 0x4000
        expected[85] = 0x4020
        expected[86] = 0x3400
        expected[87] = 0x4000
        expected[93] = 0x404B
        expected[100] = 0x4240
        expected[101] = 0x000F
        expected[106] = 0x4000
        expected[255] = 0xC7A5
        var expectedBytes = expected.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        // ATA strings: character pairs swapped in the byte stream.
        expectedBytes.replaceSubrange(20..<40, with: Array("VH00000010          ".utf8))
        expectedBytes.replaceSubrange(46..<54, with: Array(".1 0    ".utf8))
        expectedBytes.replaceSubrange(54..<94, with: Array("vhv riutlaI EDd si k                    ".utf8))

        #expect(hex(data) == hex(expectedBytes))
        #expect(data == host.channel.identifyData.bytes)
    }

    @Test func checksumMakesAllBytesSumToZeroWithSignatureA5() {
        for sectors: UInt64 in [0, 1, 63, 5_000, 1 << 28, 1 << 40] {
            var host = ATAHost(disk: TestDisk(sectors: sectors))
            let data = identify(&host)
            #expect(data[510] == 0xA5)
            #expect(data.reduce(UInt8(0), &+) == 0, "sectors \(sectors)")
        }
    }

    @Test func linuxDecodesModelSerialAndFirmwareFromTheATAStrings() throws {
        let configuration = try IDEDiskConfiguration(model: "Virtual Disk 7", serialNumber: "SN-42", firmwareRevision: "R2")
        var host = ATAHost(configuration: configuration)
        let data = identify(&host)
        #expect(ataString(data, words: 27..<47) == "Virtual Disk 7".padding(40))
        #expect(ataString(data, words: 10..<20) == "SN-42".padding(20))
        #expect(ataString(data, words: 23..<27) == "R2      ")
    }

    /// The include/linux/ata.h predicates libata-core.c's ata_dev_configure applies.
    @Test func libataSeesAnLBA48DiskWithWriteCacheFlushAndPIO4ButNoDMA() {
        var host = ATAHost(disk: TestDisk(sectors: 1 << 30))
        let data = identify(&host)
        let id = (0..<256).map { word(data, $0) }
        #expect(id[0] & 0x8000 == 0, "ata_id_is_ata")
        #expect(id[49] & 0x0200 != 0, "ata_id_has_lba")
        #expect(id[83] & 0xC000 == 0x4000 && id[83] & 0x0400 != 0, "ata_id_has_lba48")
        let lba48Capacity = (100..<104).reduce(UInt64(0)) { $0 | UInt64(id[$1]) << (16 * UInt64($1 - 100)) }
        #expect(lba48Capacity == 1 << 30, "ata_id_n_sectors with LBA48")
        #expect(UInt32(id[60]) | UInt32(id[61]) << 16 == 0x0FFF_FFFF, "28-bit capacity saturates")
        #expect(id[83] & 0x1000 != 0 && id[83] & 0x2000 != 0, "ata_id_has_flush, ata_id_has_flush_ext")
        #expect(id[82] & 0x0020 != 0 && id[85] & 0x0020 != 0 && id[87] & 0xC000 == 0x4000,
                "ata_id_has_wcache, ata_id_wcache_enabled")
        #expect(id[84] & 0x0040 == 0, "no FUA")
        #expect(id[53] & 0x0002 != 0 && (id[64] & 0x03) << 3 | 0x07 == 0x1F, "PIO 0-4")
        #expect(id[49] & 0x0100 == 0 && id[63] & 0x07 == 0 && id[88] & 0xFF == 0, "no DMA of any kind")
        #expect(id[49] & 0x0800 != 0, "ata_id_has_iordy")
        #expect(id[80] == 0x00F0, "ata_id_major_version 7: no trusted computing, no logs")
        #expect(id[47] >> 8 == 0x80 && id[59] & 0x0100 != 0 && id[59] & 0xFF == 16, "multi_count 16")
        #expect(id[2] != 0x37C8 && id[2] != 0x738C, "no spin-up needed")
        #expect(id[82] & 0x0400 == 0, "no HPA, so no READ NATIVE MAX")
    }

    @Test func settingsChangesShowInTheNextIdentify() {
        var host = ATAHost()
        host.issue(ATACommand.setFeatures, features: ATASetFeatures.disableWriteCache)
        host.issue(ATACommand.setMultipleMode, count: 4)
        host.issue(ATACommand.initializeDeviceParameters, count: 32)  // heads = (0xE0 & 0x0F) + 1 = 1
        let data = identify(&host)
        #expect(word(data, 85) & 0x0020 == 0)
        #expect(word(data, 82) & 0x0020 != 0, "still supported")
        #expect(word(data, 59) == 0x0104)
        #expect(word(data, 55) == 1 && word(data, 56) == 32)
        #expect(word(data, 1) == 992 && word(data, 3) == 16, "the default translation stays")
        #expect(data.reduce(UInt8(0), &+) == 0)
    }
}

@Suite("Disk configuration and CHS translation")
struct ConfigurationTests {
    @Test func identityStringsMustBePrintableASCIIAndFitTheirFields() {
        #expect(throws: IDEConfigurationError.stringTooLong(field: "serial number", maximum: 20)) {
            try IDEDiskConfiguration(model: "m", serialNumber: String(repeating: "9", count: 21), firmwareRevision: "1")
        }
        #expect(throws: IDEConfigurationError.stringNotPrintableASCII(field: "model")) {
            try IDEDiskConfiguration(model: "disk\u{0}", serialNumber: "1", firmwareRevision: "1")
        }
        #expect(throws: IDEConfigurationError.stringNotPrintableASCII(field: "firmware revision")) {
            try IDEDiskConfiguration(model: "m", serialNumber: "1", firmwareRevision: "é")
        }
    }

    @Test func multipleSettingsMustBePowersOfTwoWithinWord47() {
        #expect(throws: IDEConfigurationError.invalidMaximumMultiple(24)) {
            try IDEDiskConfiguration(model: "m", serialNumber: "1", firmwareRevision: "1", maximumMultipleSectors: 24)
        }
        #expect(throws: IDEConfigurationError.invalidMaximumMultiple(256)) {
            try IDEDiskConfiguration(model: "m", serialNumber: "1", firmwareRevision: "1", maximumMultipleSectors: 256)
        }
        #expect(throws: IDEConfigurationError.invalidInitialMultiple(32)) {
            try IDEDiskConfiguration(model: "m", serialNumber: "1", firmwareRevision: "1", maximumMultipleSectors: 16,
                                     initialMultipleSectors: 32)
        }
        #expect(throws: Never.self) {
            try IDEDiskConfiguration(model: "m", serialNumber: "1", firmwareRevision: "1", maximumMultipleSectors: 128,
                                     initialMultipleSectors: 0)
        }
    }

    @Test func defaultTranslationUses16HeadsOf63SectorsAndShrinksForTinyDisks() {
        #expect(CHSGeometry.defaultTranslation(sectors: 0) == nil)
        #expect(CHSGeometry.defaultTranslation(sectors: 10) == CHSGeometry(cylinders: 1, heads: 1, sectorsPerTrack: 10))
        #expect(CHSGeometry.defaultTranslation(sectors: 200) == CHSGeometry(cylinders: 1, heads: 3, sectorsPerTrack: 63))
        #expect(CHSGeometry.defaultTranslation(sectors: 1_000_000) == CHSGeometry(cylinders: 992, heads: 16, sectorsPerTrack: 63))
        #expect(CHSGeometry.defaultTranslation(sectors: 1 << 40) == CHSGeometry(cylinders: 16_383, heads: 16, sectorsPerTrack: 63))
        for sectors: UInt64 in [1, 62, 63, 64, 1_007, 1_008, 99_999, 1 << 34] {
            let geometry = CHSGeometry.defaultTranslation(sectors: sectors)
            #expect(geometry.map { $0.capacity <= sectors } == true, "never more sectors than the disk: \(sectors)")
        }
    }

    @Test func chsAddressesRoundTripAndSectorNumbersStartAtOne() throws {
        let geometry = try #require(CHSGeometry.defaultTranslation(sectors: 1_000_000))
        #expect(geometry.lba(cylinder: 0, head: 0, sector: 1) == 0)
        #expect(geometry.lba(cylinder: 0, head: 0, sector: 0) == nil)
        #expect(geometry.lba(cylinder: 0, head: 16, sector: 1) == nil)
        #expect(geometry.lba(cylinder: 992, head: 0, sector: 1) == nil)
        #expect(geometry.lba(cylinder: 2, head: 3, sector: 4) == (2 * 16 + 3) * 63 + 3)
        for lba: UInt64 in [0, 62, 63, 1_007, 1_008, 999_935] {
            let address = geometry.address(of: lba)
            #expect(geometry.lba(cylinder: address.cylinder, head: address.head, sector: address.sector) == lba)
        }
    }
}

extension String {
    func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
}
