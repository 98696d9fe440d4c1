import Testing
@testable import IDEEmulator

@Suite("Linux 6.1 pata_legacy + libata probe, replayed register by register")
struct LibataProbeTests {
    /// drivers/ata/pata_legacy.c: probe_chip_type for 0x1F0 decides BIOS (a plain port) when
    /// bit 7 written to Sector Count reads back, else it takes the port for a PDC20230.
    @Test func probeChipTypeFindsAPlainBIOSPortNotAPromiseVLB() {
        var host = ATAHost()
        host.outb(host.inb(0x1F2) | 0x80, 0x1F2)
        _ = host.inb(0x1F5)
        _ = host.inb(0x1F2)
        _ = host.inb(0x3F6)
        _ = host.inb(0x3F6)
        _ = host.inb(0x1F2)
        _ = host.inb(0x1F2)
        #expect(host.inb(0x1F2) & 0x80 != 0, "no PDC20230-C/20630")
        host.outb(0x55, 0x1F2)
        _ = host.inb(0x1F2)
        _ = host.inb(0x1F2)
        #expect(host.inb(0x1F2) != 0x00, "no PDC20230-B")
        #expect(host.newEdges() == 0)
    }

    @Test func theFullProbeFindsOneATADiskAsMasterAndNoSlave() throws {
        var ap = LibataPort(host: ATAHost(disk: TestDisk(sectors: 2_000_000)))

        // ata_host_start → ports start frozen (ata_sff_freeze).
        ap.freeze()
        #expect(ap.host.channel.interruptLine == false)

        // EH: ata_sff_prereset waits for !BSY.
        #expect(ap.waitReady() == 0)

        // ata_sff_softreset.
        let reset = ap.softreset()
        #expect(reset.rc == 0)
        #expect(reset.devmask == 0b11, "the absent slave echoes the shared task file, as real device 0 does")
        #expect(reset.slaveRegisterPolls == 1, "the signature is in nsect/lbal at once: no 50 ms sleeps")
        #expect(reset.classes == [.ata, .none], "the slave's Status 00h makes ata_sff_dev_classify say NONE")

        ap.postreset(reset.classes)
        ap.thaw()
        #expect(ap.host.newEdges() == 0, "a reset raises no interrupt")

        // ata_dev_read_id: IDENTIFY DEVICE, polled (nIEN set for the command).
        var identify = LibataPort.Command(command: 0xEC, polling: true)
        identify.device = 0xA0
        ap.issue(identify)
        let first = ap.busyWait(0x80, 5)                                           // ata_sff_pio_task
        let id = try #require(ap.pioIn(blocks: 1, sectorsPerBlock: 1, firstStatus: first) { $0.checkStatus() })
        #expect(id.status & 0x89 == 0, "ata_ok")
        ap.irqOn()                                                                 // ata_hsm_qc_complete(in_wq)
        let result = ap.tfRead()                                                   // ata_sff_qc_fill_rtf
        #expect(result.status == statusIdle && result.error == 0)
        #expect(ap.host.newEdges() == 0, "polled: nIEN kept the line low, and Status reads cleared the latch")
        #expect(id.data == ap.host.channel.identifyData.bytes)
        let words = (0..<256).map { UInt16(id.data[2 * $0]) | UInt16(id.data[2 * $0 + 1]) << 8 }
        #expect(words[0] & 0x8000 == 0 && words[80] == 0x00F0 && words[49] & 0x0200 != 0,
                "ATA-7 with LBA: no INITIALIZE DEVICE PARAMETERS after IDENTIFY (ata_dev_read_id)")

        // ata_do_set_mode → ata_dev_set_xfermode: SET FEATURES, XFER_PIO_4 (0x0C), polled.
        // (pata_legacy's BIOS controllers use legacy_set_mode instead and skip it.)
        ap.issue(LibataPort.Command(command: 0xEF, feature: 0x03, nsect: 0x0C, polling: true))
        let setMode = ap.busyWait(0x80, 5)
        #expect(setMode == statusIdle, "HSM_ST_LAST: ata_ok")
        ap.irqOn()
        #expect(ap.tfRead().error == 0)
        #expect(ap.host.channel.transferMode == 0x0C)

        // ata_dev_revalidate: IDENTIFY again; ata_dev_same_device needs the same data.
        ap.issue(identify)
        let again = try #require(ap.pioIn(blocks: 1, sectorsPerBlock: 1, firstStatus: ap.busyWait(0x80, 5)) { $0.checkStatus() })
        ap.irqOn()
        #expect(again.data == id.data)
        #expect(ap.host.newEdges() == 0)
        #expect(ap.host.disk.log.isEmpty, "probing touched no sector")
    }

    /// The first I/O after the probe: sd reads the partition table with READ MULTIPLE (multi
    /// count 16 from word 59), interrupt driven through ata_sff_interrupt.
    @Test func interruptDrivenReadMultipleAfterProbe() throws {
        var ap = LibataPort(host: ATAHost())
        ap.freeze()
        let reset = ap.softreset()
        ap.postreset(reset.classes)
        ap.thaw()

        ap.issue(LibataPort.Command(command: 0xC4, nsect: 8, device: 0xE0))
        #expect(ap.host.newEdges() == 1, "one IRQ 14 pulse for the DRQ block")
        // __ata_sff_port_intr: ata_sff_irq_status reads Alternate Status, then Status.
        #expect(ap.altStatus() & 0x80 == 0)
        let status = ap.checkStatus()
        #expect(ap.host.channel.interruptLine == false)
        let read = try #require(ap.pioIn(blocks: 1, sectorsPerBlock: 8, firstStatus: status) { $0.checkStatus() })
        #expect(read.status == statusIdle)
        #expect(read.data == ap.host.disk.sectors(0, count: 8))
        #expect(ap.host.newEdges() == 0, "no interrupt after the last data-in block")
        #expect(ap.host.disk.log == [.read(lba: 0, sectors: 8)])
    }

    /// READ SECTORS as the parent's controller serves it (`loadsBlocksLater`): after each block
    /// but the last the device is busy until the next one is loaded, then interrupts once;
    /// __ata_sff_port_intr finds BSY clear when that interrupt comes.
    @Test func interruptDrivenReadSectorsWithBlocksLoadedLater() throws {
        var ap = LibataPort(host: ATAHost())
        ap.host.channel.loadsBlocksLater = true
        ap.freeze()
        let reset = ap.softreset()
        ap.postreset(reset.classes)
        ap.thaw()

        ap.issue(LibataPort.Command(command: 0x20, nsect: 3, device: 0xE0))
        #expect(ap.host.newEdges() == 1)
        #expect(ap.altStatus() & 0x80 == 0)
        let read = try #require(ap.pioIn(blocks: 3, sectorsPerBlock: 1, firstStatus: ap.checkStatus()) { ap in
            #expect(ap.altStatus() == 0x80, "BSY: an interrupt now would be taken for a spurious one")
            #expect(ap.host.newEdges() == 0)
            ap.host.channel.loadAwaitedBlock()                                     // the controller's thread
            #expect(ap.host.newEdges() == 1, "one IRQ 14 pulse for the next DRQ block")
            #expect(ap.altStatus() & 0x80 == 0)
            return ap.checkStatus()
        })
        #expect(read.status == statusIdle)
        #expect(read.data == ap.host.disk.sectors(0, count: 3))
        #expect(ap.host.newEdges() == 0, "no interrupt after the last data-in block")
        #expect(ap.host.disk.log == [.read(lba: 0, sectors: 1), .read(lba: 1, sectors: 1), .read(lba: 2, sectors: 1)])
    }

    /// WRITE MULTIPLE: the pio task sends the first block; the device interrupts when done.
    @Test func interruptDrivenWriteMultipleAndFlush() throws {
        var ap = LibataPort(host: ATAHost())
        ap.freeze()
        let reset = ap.softreset()
        ap.postreset(reset.classes)
        ap.thaw()
        let payload = (0..<(8 * 512)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }

        ap.issue(LibataPort.Command(command: 0xC5, nsect: 8, lbal: 0x10, device: 0xE0))
        #expect(ap.host.newEdges() == 0, "no interrupt before the first data-out block")
        let first = ap.busyWait(0x80, 5)                                           // HSM_ST_FIRST in the pio task
        #expect(first == statusDataRequest)
        for sector in 0..<8 { ap.host.outsw(dataPort, Array(payload[(sector * 512)..<((sector + 1) * 512)])) }
        ap.pause()
        #expect(ap.host.newEdges() == 1, "the completion interrupt")
        #expect(ap.checkStatus() == statusIdle)                                    // HSM_ST_LAST: ata_ok
        #expect(ap.host.disk.sectors(0x10, count: 8) == payload)

        ap.issue(LibataPort.Command(command: 0xE7, device: 0xE0))                  // ata_flush_cache
        #expect(ap.host.newEdges() == 1)
        #expect(ap.checkStatus() == statusIdle)
        #expect(ap.host.disk.log == [.write(lba: 0x10, sectors: 8), .flush])
    }
}
