import Testing
@testable import IDEEmulator

@Suite("Errors")
struct ErrorPathTests {
    @Test func unknownCommandsAbortWithERRAndABRTAndInterrupt() {
        for command: UInt8 in [0x00, 0x08, 0x10, 0x21, 0x25, 0x35, 0x70, 0xA0, 0xA1, 0xB0, 0xC8, 0xCA, 0xE6, 0xF8, 0xFF] {
            var host = ATAHost()
            host.issue(command)
            #expect(host.newEdges() == 1, "command 0x\(String(command, radix: 16))")
            #expect(host.inb(statusPort) == statusError)
            #expect(host.inb(errorPort) == ATAError.aborted)
            #expect(host.disk.log.isEmpty)
        }
    }

    /// ata_dev_read_id retries an aborted IDENTIFY as IDENTIFY PACKET DEVICE, whose abort ends
    /// the probe; so the ATA device must abort A1h and answer ECh.
    @Test func identifyPacketDeviceAbortsButIdentifyDeviceSucceedsAfterIt() {
        var host = ATAHost()
        host.issue(0xA1)
        #expect(host.inb(statusPort) == statusError)
        host.issue(ATACommand.identifyDevice)
        #expect(host.inb(statusPort) == statusDataRequest)
        #expect(host.inb(errorPort) == 0, "the next command clears the error")
    }

    @Test func addressesOutsideTheDiskFailWithIDNF() {
        var host = ATAHost(disk: TestDisk(sectors: 1000))
        for (command, lba, count) in [(ATACommand.readSectors, UInt64(1000), 1), (ATACommand.readSectors, 999, 2),
                                      (ATACommand.writeSectors, 990, 11), (ATACommand.readMultiple, 5000, 1),
                                      (ATACommand.readVerifySectors, 0x0FFF_FFFF, 1)] {
            host.issue(command, lba: lba, count: count)
            #expect(host.inb(statusPort) == statusError)
            #expect(host.inb(errorPort) == ATAError.idNotFound)
        }
        host.issueExt(ATACommand.readSectorsExt, lba: 1 << 47, count: 1)
        #expect(host.inb(errorPort) == ATAError.idNotFound)
        #expect(host.disk.log.isEmpty)
    }

    @Test func chsAddressesOutsideTheTranslationFailWithIDNF() {
        var host = ATAHost()
        for (sector, head, cylinder) in [(UInt8(0), UInt8(0), UInt16(0)), (64, 0, 0), (1, 0, 992), (1, 0, 0xFFFF)] {
            host.outb(1, nsectPort)
            host.outb(sector, lbalPort)
            host.outb(UInt8(cylinder & 0xFF), lbamPort)
            host.outb(UInt8(cylinder >> 8), lbahPort)
            host.outb(0xA0 | head, devicePort)
            host.outb(ATACommand.readSectors, commandPort)
            #expect(host.inb(statusPort) == statusError)
            #expect(host.inb(errorPort) == ATAError.idNotFound)
        }
    }

    @Test func aReadOnlyDiskAbortsWritesBeforeTheDataPhase() {
        var host = ATAHost(disk: TestDisk(sectors: 1000, readOnly: true))
        for command in [ATACommand.writeSectors, ATACommand.writeMultiple] {
            host.issue(command, lba: 0, count: 1)
            #expect(host.newEdges() == 1)
            #expect(host.inb(statusPort) == statusError)
            #expect(host.inb(errorPort) == ATAError.aborted)
        }
        host.issueExt(ATACommand.writeSectorsExt, lba: 0, count: 1)
        #expect(host.inb(statusPort) == statusError)
        host.outsw(dataPort, [UInt8](repeating: 1, count: 512))
        #expect(host.disk.log.isEmpty)
        host.issue(ATACommand.readSectors, lba: 0, count: 1)
        #expect(host.inb(statusPort) == statusDataRequest, "reads still work")
    }

    @Test func aReadFailureInTheMiddleEndsTheCommandWithUNCAtTheFailedBlock() {
        var disk = TestDisk(sectors: 1000)
        disk.failingReads = [21]
        var host = ATAHost(disk: disk)
        host.issue(ATACommand.readMultiple, lba: 2, count: 24)
        #expect(host.newEdges() == 1)
        #expect(host.inb(statusPort) == statusDataRequest)
        let data = host.insw(dataPort, 2048) + host.insw(dataPort, 2048)
        #expect(data == host.disk.sectors(2, count: 16))
        #expect(host.newEdges() == 1, "the failure interrupts too")
        #expect(host.inb(statusPort) == statusError, "ERR without DRQ: libata's HSM_ST sees AC_ERR_DEV")
        #expect(host.inb(errorPort) == ATAError.uncorrectable)
        #expect(host.readLBA28() == 18, "the block that failed starts at 18")
        #expect(host.insw(dataPort, 4).allSatisfy { $0 == 0xFF })
    }

    @Test func aFailureOnTheFirstBlockNeverRaisesDRQ() {
        var disk = TestDisk(sectors: 1000)
        disk.failingReads = [7]
        var host = ATAHost(disk: disk)
        host.issue(ATACommand.readSectors, lba: 7, count: 1)
        #expect(host.inb(statusPort) == statusError)
        #expect(host.inb(errorPort) == ATAError.uncorrectable)
        #expect(host.readLBA28() == 7)
    }

    @Test func aWriteFailureEndsTheCommandWithABRTAtTheFailedBlock() {
        var disk = TestDisk(sectors: 1000)
        disk.failingWrites = [101]
        var host = ATAHost(disk: disk)
        host.issue(ATACommand.writeSectors, lba: 100, count: 3)
        host.outsw(dataPort, [UInt8](repeating: 7, count: 3 * 512))
        #expect(host.inb(statusPort) == statusError)
        #expect(host.inb(errorPort) == ATAError.aborted)
        #expect(host.readLBA28() == 101)
        #expect(host.disk.log == [.write(lba: 100, sectors: 1), .write(lba: 101, sectors: 1)])
        #expect(host.channel.takeStorageFailure() == TestDisk.Failure(operation: "write", lba: 101))
    }

    @Test func aFailedFlushAborts() {
        var disk = TestDisk(sectors: 1000)
        disk.flushFails = true
        var host = ATAHost(disk: disk)
        host.issueExt(ATACommand.flushCacheExt, lba: 0, count: 0)
        #expect(host.inb(statusPort) == statusError)
        #expect(host.inb(errorPort) == ATAError.aborted)
        host.issue(ATACommand.setFeatures, features: ATASetFeatures.disableWriteCache)
        #expect(host.inb(statusPort) == statusError, "the cache cannot be turned off if its data cannot be flushed")
        #expect(host.channel.writeCacheEnabled)
    }

    @Test func multipleCommandsAbortWhileMultipleModeIsDisabled() {
        var host = ATAHost()
        host.issue(ATACommand.setMultipleMode, count: 0)
        #expect(host.inb(statusPort) == statusIdle)
        #expect(host.channel.multipleSectors == 0)
        for command in [ATACommand.readMultiple, ATACommand.writeMultiple] {
            host.issue(command, lba: 0, count: 1)
            #expect(host.inb(statusPort) == statusError)
            #expect(host.inb(errorPort) == ATAError.aborted)
        }
        host.issueExt(ATACommand.readMultipleExt, lba: 0, count: 1)
        #expect(host.inb(statusPort) == statusError)
    }

    @Test func setMultipleModeAcceptsOnlyPowersOfTwoUpToWord47() {
        var host = ATAHost()
        for (count, accepted) in [(1, true), (2, true), (16, true), (3, false), (32, false), (255, false)] {
            host.issue(ATACommand.setMultipleMode, count: count)
            #expect((host.inb(statusPort) == statusIdle) == accepted, "count \(count)")
        }
        #expect(host.channel.multipleSectors == 16)
    }

    @Test func setFeaturesAcceptsPIOModesButNoDMAAndAbortsUnknownSubcommands() {
        var host = ATAHost()
        for (mode, accepted) in [(0x00, true), (0x01, true), (0x08, true), (0x0C, true), (0x0D, false), (0x02, false),
                                 (0x10, false), (0x20, false), (0x22, false), (0x40, false), (0x45, false)] {
            host.issue(ATACommand.setFeatures, count: mode, features: ATASetFeatures.setTransferMode)
            #expect((host.inb(statusPort) == statusIdle) == accepted, "mode 0x\(String(mode, radix: 16))")
        }
        #expect(host.channel.transferMode == 0x0C)
        for subcommand: UInt8 in [0x00, 0x05, 0x10, 0x55, 0x66, 0xAA, 0xCC] {
            host.issue(ATACommand.setFeatures, features: subcommand)
            #expect(host.inb(statusPort) == statusError)
            #expect(host.inb(errorPort) == ATAError.aborted)
        }
    }

    @Test func initializeDeviceParametersSetsTheTranslationAndARefusedOneDisablesCHS() {
        var host = ATAHost()
        host.outb(32, nsectPort)
        host.outb(0xA7, devicePort)  // 8 heads
        host.outb(ATACommand.initializeDeviceParameters, commandPort)
        #expect(host.inb(statusPort) == statusIdle)
        #expect(host.channel.currentGeometry == CHSGeometry(cylinders: 1_000_000 / 256, heads: 8, sectorsPerTrack: 32))

        host.outb(0, nsectPort)
        host.outb(ATACommand.initializeDeviceParameters, commandPort)
        #expect(host.inb(statusPort) == statusError)
        #expect(host.channel.currentGeometry == nil)
        host.outb(1, nsectPort)
        host.outb(1, lbalPort)
        host.outb(0, lbamPort)
        host.outb(0, lbahPort)
        host.outb(0xA0, devicePort)
        host.outb(ATACommand.readSectors, commandPort)
        #expect(host.inb(errorPort) == ATAError.idNotFound, "no CHS translation, no CHS access")
        host.issue(ATACommand.readSectors, lba: 0, count: 1)
        #expect(host.inb(statusPort) == statusDataRequest, "LBA is unaffected")
    }

    @Test func anEmptyDiskFailsEveryMediaAccessButStillIdentifies() {
        var host = ATAHost(disk: TestDisk(sectors: 0))
        host.issue(ATACommand.readSectors, lba: 0, count: 1)
        #expect(host.inb(errorPort) == ATAError.idNotFound)
        host.issue(ATACommand.identifyDevice)
        #expect(host.inb(statusPort) == statusDataRequest)
        let data = host.insw(dataPort, 256)
        #expect(data[120..<124].allSatisfy { $0 == 0 } && data[200..<208].allSatisfy { $0 == 0 }, "capacity 0")
        #expect(data[2..<4].allSatisfy { $0 == 0 } && data[106] & 1 == 0, "no CHS translation")
    }
}
