import Testing
@testable import IDEEmulator

@Suite("48-bit addressing")
struct LBA48Tests {
    @Test func addressRegistersAreTwoDeepFIFOsReadBackWithHOB() {
        var host = ATAHost()
        for (port, older, newer) in [(nsectPort, UInt8(0x12), UInt8(0x34)), (lbalPort, 0x56, 0x78), (lbamPort, 0x9A, 0xBC),
                                     (lbahPort, 0xDE, 0xF0)] {
            host.outb(older, port)
            host.outb(newer, port)
            #expect(host.inb(port) == newer)
            host.outb(0x80, ctlPort)
            #expect(host.inb(port) == older)
            host.outb(0x00, ctlPort)
        }
    }

    @Test func aCommandBlockWriteClearsHOB() {
        var host = ATAHost()
        host.outb(0x11, lbalPort)
        host.outb(0x22, lbalPort)
        host.outb(0x80, ctlPort)
        #expect(host.inb(lbalPort) == 0x11)
        host.outb(0x33, nsectPort)
        #expect(host.inb(lbalPort) == 0x22, "HOB cleared by the Sector Count write")
    }

    @Test func readSectorsExtAboveThe28BitLimit() {
        var host = ATAHost(disk: TestDisk(sectors: 1 << 40))
        let lba: UInt64 = 0x12_3456_789A
        host.issueExt(ATACommand.readSectorsExt, lba: lba, count: 2)
        var data: [UInt8] = []
        for _ in 0..<2 {
            #expect(host.inb(statusPort) == statusDataRequest)
            data += host.insw(dataPort, 256)
        }
        #expect(data == host.disk.sectors(lba, count: 2))
        #expect(host.disk.log == [.read(lba: lba, sectors: 1), .read(lba: lba + 1, sectors: 1)])
    }

    @Test func readMultipleExtAndWriteMultipleExtUseTheMultipleBlock() {
        var host = ATAHost(disk: TestDisk(sectors: 1 << 34))
        let lba: UInt64 = (1 << 33) + 7
        host.issueExt(ATACommand.readMultipleExt, lba: lba, count: 20)
        var data: [UInt8] = []
        while host.inb(statusPort) & 0x08 != 0 { data += host.insw(dataPort, 512) }
        #expect(data == host.disk.sectors(lba, count: 20))
        #expect(host.disk.log == [.read(lba: lba, sectors: 16), .read(lba: lba + 16, sectors: 4)])

        host.disk.clearLog()
        host.issueExt(ATACommand.writeMultipleExt, lba: lba, count: 17)
        for run in [4096, 4096, 512] { host.outsw(dataPort, [UInt8](repeating: 0x5A, count: run)) }
        #expect(host.inb(statusPort) == statusIdle)
        #expect(host.disk.log == [.write(lba: lba, sectors: 16), .write(lba: lba + 16, sectors: 1)])
    }

    /// Sector Count 0 means 65536 sectors for EXT commands (256 for 28-bit ones).
    @Test func zeroSectorCountMeans65536ForExtAnd256ForLBA28() {
        var host = ATAHost(disk: TestDisk(sectors: 100_000))
        host.issueExt(ATACommand.readVerifySectorsExt, lba: 100_000 - 65_536, count: 0)
        #expect(host.inb(statusPort) == statusIdle)
        host.issueExt(ATACommand.readVerifySectorsExt, lba: 100_000 - 65_535, count: 0)
        #expect(host.inb(statusPort) == statusError)
        #expect(host.inb(errorPort) == ATAError.idNotFound)

        host.issue(ATACommand.readVerifySectors, lba: 100_000 - 256, count: 0)
        #expect(host.inb(statusPort) == statusIdle)
        host.issue(ATACommand.readVerifySectors, lba: 100_000 - 255, count: 0)
        #expect(host.inb(statusPort) == statusError)
    }

    @Test func lba28CommandsStopAtTheir28BitCapacity() {
        var host = ATAHost(disk: TestDisk(sectors: 1 << 30))
        host.issue(ATACommand.readVerifySectors, lba: 0x0FFF_FFFE, count: 1)
        #expect(host.inb(statusPort) == statusIdle, "the last sector words 60-61 cover")
        host.issue(ATACommand.readVerifySectors, lba: 0x0FFF_FFFF, count: 1)
        #expect(host.inb(statusPort) == statusError)
        #expect(host.inb(errorPort) == ATAError.idNotFound)
        host.issueExt(ATACommand.readVerifySectorsExt, lba: 0x0FFF_FFFF, count: 1)
        #expect(host.inb(statusPort) == statusIdle)
    }

    @Test func aFailedExtReadReportsThe48BitLBAInCurrentAndHOBBytes() {
        var disk = TestDisk(sectors: 1 << 40)
        let lba: UInt64 = 0xAB_CDEF_0123
        disk.failingReads = [lba + 1]
        var host = ATAHost(disk: disk)
        host.issueExt(ATACommand.readSectorsExt, lba: lba, count: 3)
        _ = host.insw(dataPort, 256)
        #expect(host.inb(statusPort) == statusError)
        #expect(host.inb(errorPort) == ATAError.uncorrectable)
        #expect(host.readLBA48() == lba + 1)
        #expect(host.channel.takeStorageFailure() == TestDisk.Failure(operation: "read", lba: lba + 1))
        #expect(host.channel.takeStorageFailure() == nil)
    }
}
