import Testing
import TestSupport
@testable import IDEEmulator

@Suite("PIO data transfers")
struct PIOTransferTests {
    private func payload(_ sectors: Int, seed: UInt64) -> [UInt8] {
        var generator = SeededGenerator(seed: seed)
        return generator.bytes(sectors * 512)
    }

    @Test func readSectorsOneSectorWithSixteenBitAccesses() {
        var host = ATAHost()
        host.issue(ATACommand.readSectors, lba: 1234, count: 1)
        #expect(host.newEdges() == 1)
        #expect(host.inb(statusPort) == statusDataRequest)
        var data: [UInt8] = []
        for _ in 0..<256 {
            let word = host.inw(dataPort)
            data += [UInt8(word & 0xFF), UInt8(word >> 8)]
        }
        #expect(data == host.disk.sector(1234))
        #expect(host.inb(statusPort) == statusIdle)
        #expect(host.newEdges() == 0)
        #expect(host.inw(dataPort) == 0xFFFF, "no data phase: a floating bus")
    }

    @Test func readSectorsOneSectorWithThirtyTwoBitAccesses() {
        var host = ATAHost()
        host.issue(ATACommand.readSectors, lba: 77, count: 1)
        var data: [UInt8] = []
        for _ in 0..<128 {
            let value = host.inl(dataPort)
            data += (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
        }
        #expect(data == host.disk.sector(77))
        #expect(host.inb(statusPort) == statusIdle)
    }

    /// READ SECTORS of several sectors: one DRQ block, and one interrupt, per sector.
    @Test func readSectorsInterruptsOncePerSectorAndNotAfterTheLast() {
        var host = ATAHost()
        host.issue(ATACommand.readSectors, lba: 500, count: 3)
        var data: [UInt8] = []
        for sector in 0..<3 {
            #expect(host.newEdges() == 1, "sector \(sector)")
            #expect(host.inb(statusPort) == statusDataRequest)
            data += host.insw(dataPort, 256)
        }
        #expect(host.newEdges() == 0)
        #expect(host.inb(statusPort) == statusIdle)
        #expect(data == host.disk.sectors(500, count: 3))
        #expect(host.disk.log == [.read(lba: 500, sectors: 1), .read(lba: 501, sectors: 1), .read(lba: 502, sectors: 1)])
    }

    /// READ MULTIPLE: blocks of the multiple setting, the last one partial.
    @Test func readMultipleUsesBlocksOfTheMultipleSetting() {
        var host = ATAHost()
        host.issue(ATACommand.setMultipleMode, count: 4)
        _ = host.inb(statusPort)
        _ = host.newEdges()
        host.disk.clearLog()
        host.issue(ATACommand.readMultiple, lba: 10, count: 10)
        var data: [UInt8] = []
        for words in [1024, 1024, 512] {
            #expect(host.newEdges() == 1)
            #expect(host.inb(statusPort) == statusDataRequest)
            data += host.insl(dataPort, words / 2)
        }
        #expect(host.inb(statusPort) == statusIdle)
        #expect(data == host.disk.sectors(10, count: 10))
        #expect(host.disk.log == [.read(lba: 10, sectors: 4), .read(lba: 14, sectors: 4), .read(lba: 18, sectors: 2)])
    }

    /// A REP INSW that reads past the end of a block continues into the next block (the
    /// device has it ready at once); past the command's end it reads 0xFF.
    @Test func oneStringReadMaySpanBlocksAndEndsInFloatingBus() {
        var host = ATAHost()
        host.issue(ATACommand.readSectors, lba: 3, count: 2)
        let data = host.insw(dataPort, 600)
        #expect(Array(data.prefix(1024)) == host.disk.sectors(3, count: 2))
        #expect(data.suffix(176).allSatisfy { $0 == 0xFF })
        #expect(host.newEdges() == 1, "the second block's interrupt came while the first was unacknowledged: the line stayed high")
        #expect(host.channel.interruptLine, "pending until Status is read")
        #expect(host.inb(statusPort) == statusIdle)
    }

    @Test func stringReadsAreBatchedIntoWholeBlockCopies() {
        var host = ATAHost()
        host.issue(ATACommand.readMultiple, lba: 0, count: 16)
        // KVM hands REP INSW over in runs of up to 1 KiB (arch/x86/kvm/emulate.c: pio_in_emulated).
        var data: [UInt8] = []
        for _ in 0..<8 { data += host.insw(dataPort, 512) }
        #expect(data == host.disk.sectors(0, count: 16))
        #expect(host.disk.log == [.read(lba: 0, sectors: 16)])
    }

    @Test func writeSectorsOneSectorWithSixteenBitAccessesAndNoInterruptBeforeData() {
        var host = ATAHost()
        let bytes = payload(1, seed: 1)
        host.issue(ATACommand.writeSectors, lba: 42, count: 1)
        #expect(host.newEdges() == 0, "PIO data-out: DRQ without an interrupt for the first block")
        #expect(host.inb(altstatusPort) == statusDataRequest)
        for index in stride(from: 0, to: 512, by: 2) { host.outw(UInt16(bytes[index]) | UInt16(bytes[index + 1]) << 8, dataPort) }
        #expect(host.newEdges() == 1, "completion")
        #expect(host.inb(statusPort) == statusIdle)
        #expect(host.disk.sector(42) == bytes)
    }

    @Test func writeSectorsSeveralSectorsThirtyTwoBitInterruptsAfterEachBlock() {
        var host = ATAHost()
        let bytes = payload(3, seed: 2)
        host.issue(ATACommand.writeSectors, lba: 900, count: 3)
        for sector in 0..<3 {
            #expect(host.inb(statusPort) == statusDataRequest, "sector \(sector)")
            for index in stride(from: sector * 512, to: (sector + 1) * 512, by: 4) {
                host.outl(UInt32(bytes[index]) | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2]) << 16
                          | UInt32(bytes[index + 3]) << 24, dataPort)
            }
            #expect(host.newEdges() == 1, "after block \(sector)")
        }
        #expect(host.inb(statusPort) == statusIdle)
        #expect(host.disk.sectors(900, count: 3) == bytes)
        #expect(host.disk.log == [.write(lba: 900, sectors: 1), .write(lba: 901, sectors: 1), .write(lba: 902, sectors: 1)])
    }

    @Test func writeMultipleWithStringWritesCrossingBlocks() {
        var host = ATAHost()
        let bytes = payload(20, seed: 3)
        host.issue(ATACommand.writeMultiple, lba: 64, count: 20)
        // Runs that do not line up with the 16-sector blocks (each at most a page).
        var offset = 0
        for run in [1000, 3000, 4096, 2144] {
            host.outsl(dataPort, Array(bytes[offset..<(offset + run)]))
            offset += run
        }
        #expect(offset == bytes.count)
        #expect(host.newEdges() == 1, "edges after blocks 1 and 2 merge: nothing read Status in between")
        #expect(host.inb(statusPort) == statusIdle)
        #expect(host.disk.sectors(64, count: 20) == bytes)
        #expect(host.disk.log == [.write(lba: 64, sectors: 16), .write(lba: 80, sectors: 4)])
    }

    @Test func writesPastTheCommandAreDroppedAndOddRunsTakeAWholeWord() {
        var host = ATAHost()
        let bytes = payload(1, seed: 4)
        host.issue(ATACommand.writeSectors, lba: 5, count: 1)
        host.channel.writeData(Array(bytes.prefix(511)))
        #expect(host.inb(statusPort) == statusIdle, "511 bytes took 256 words")
        #expect(host.disk.sector(5) == Array(bytes.prefix(511)) + [0])
        host.outsw(dataPort, [1, 2, 3, 4])
        #expect(host.disk.log == [.write(lba: 5, sectors: 1)])
    }

    @Test func writeCacheDisabledFlushesBeforeCompletion() {
        var host = ATAHost()
        host.issue(ATACommand.setFeatures, features: ATASetFeatures.disableWriteCache)
        #expect(host.inb(statusPort) == statusIdle)
        #expect(host.channel.writeCacheEnabled == false)
        host.disk.clearLog()
        host.issue(ATACommand.writeSectors, lba: 8, count: 2)
        host.outsw(dataPort, payload(2, seed: 5))
        #expect(host.disk.log == [.write(lba: 8, sectors: 1), .write(lba: 9, sectors: 1), .flush])
        host.issue(ATACommand.setFeatures, features: ATASetFeatures.enableWriteCache)
        host.disk.clearLog()
        host.issue(ATACommand.writeSectors, lba: 8, count: 1)
        host.outsw(dataPort, payload(1, seed: 6))
        #expect(host.disk.log == [.write(lba: 8, sectors: 1)])
    }

    @Test func readsSeeEarlierWritesThroughTheDevice() {
        var host = ATAHost()
        let bytes = payload(5, seed: 7)
        host.issueExt(ATACommand.writeMultipleExt, lba: 123_456, count: 5)
        host.outsw(dataPort, bytes)
        host.issueExt(ATACommand.readSectorsExt, lba: 123_456, count: 5)
        var data: [UInt8] = []
        for _ in 0..<5 { data += host.insw(dataPort, 256) }
        #expect(data == bytes)
    }

    @Test func chsAddressingReadsTheTranslatedSector() {
        var host = ATAHost()
        // Cylinder 2, head 3, sector 4 under 16 heads x 63 sectors.
        host.outb(1, nsectPort)
        host.outb(4, lbalPort)
        host.outb(2, lbamPort)
        host.outb(0, lbahPort)
        host.outb(0xA3, devicePort)
        host.outb(ATACommand.readSectors, commandPort)
        let data = host.insw(dataPort, 256)
        #expect(data == host.disk.sector((2 * 16 + 3) * 63 + 3))
    }

    @Test func readVerifyChecksTheRangeWithoutTransferringData() {
        var host = ATAHost()
        host.issue(ATACommand.readVerifySectors, lba: 999_999, count: 1)
        #expect(host.newEdges() == 1)
        #expect(host.inb(statusPort) == statusIdle)
        #expect(host.disk.log.isEmpty)
    }

    /// As the parent's controller drives the channel: the block after a DRQ block is read when
    /// the host says so, and until then the device is busy (ATA: BSY between data-in blocks),
    /// no data moves and no register write lands.
    @Test func aChannelThatLoadsBlocksLaterIsBusyBetweenDataInBlocks() {
        var host = ATAHost()
        host.channel.loadsBlocksLater = true
        host.issue(ATACommand.readSectors, lba: 40, count: 2)
        #expect(host.newEdges() == 1)
        #expect(host.inb(statusPort) == statusDataRequest, "the first block is read with the command")
        // One run that would cross into the second block stops at the first block's end.
        let first = host.insw(dataPort, 384)
        #expect(Array(first[0..<512]) == host.disk.sector(40))
        #expect(first[512...].allSatisfy { $0 == 0xFF }, "no data while the next block is read")
        #expect(host.channel.awaitsBlockLoad)
        #expect(host.inb(altstatusPort) == 0x80 && host.inb(statusPort) == 0x80 && host.inb(nsectPort) == 0x80)
        #expect(host.newEdges() == 0)
        host.outb(0x99, lbalPort)
        #expect(host.disk.log == [.read(lba: 40, sectors: 1)], "nothing read until the host loads it")
        host.channel.loadAwaitedBlock()
        #expect(!host.channel.awaitsBlockLoad)
        #expect(host.newEdges() == 1, "an interrupt for the second block")
        #expect(host.inb(statusPort) == statusDataRequest)
        #expect(host.insw(dataPort, 256) == host.disk.sector(41))
        #expect(host.inb(statusPort) == statusIdle, "no block awaited after the last")
        #expect(!host.channel.awaitsBlockLoad)
        #expect(host.inb(lbalPort) != 0x99, "the write while busy was ignored")
    }

    @Test func aBlockLoadedLaterThatFailsEndsTheCommandWithUNC() {
        var host = ATAHost()
        host.channel.loadsBlocksLater = true
        host.disk.failingReads = [61]
        host.issue(ATACommand.readSectors, lba: 60, count: 2)
        _ = host.insw(dataPort, 256)
        host.channel.loadAwaitedBlock()
        #expect(host.inb(statusPort) == statusError)
        #expect(host.inb(errorPort) == 0x40, "UNC")
        #expect(host.channel.takeStorageFailure() != nil)
    }

    @Test func aResetWhileABlockIsAwaitedLeavesNothingToLoad() {
        var host = ATAHost()
        host.channel.loadsBlocksLater = true
        host.issue(ATACommand.readSectors, lba: 7, count: 3)
        _ = host.insw(dataPort, 256)
        host.outb(0x0C, ctlPort)
        host.outb(0x08, ctlPort)
        #expect(!host.channel.awaitsBlockLoad)
        host.disk.clearLog()
        host.channel.loadAwaitedBlock()
        #expect(host.disk.log.isEmpty)
        #expect(host.inb(statusPort) == statusIdle)
    }
}
