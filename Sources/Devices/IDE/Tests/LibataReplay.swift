@testable import IDEEmulator

/// The register accesses of Linux 6.1 libata-sff on a pata_legacy port, one helper per
/// kernel function (drivers/ata/libata-sff.c unless noted), with the values the kernel
/// branches on returned so tests can check each decision.
struct LibataPort {
    enum DeviceClass: Equatable { case ata, atapi, unknown, none }

    static let ATA_NIEN: UInt8 = 0x02
    static let ATA_SRST: UInt8 = 0x04
    /// ATA_DEVCTL_OBS, libata's initial ap->ctl.
    static let ATA_DEVCTL_OBS: UInt8 = 0x08

    var host: ATAHost
    var ctl = ATA_DEVCTL_OBS
    var lastCtl = ATA_DEVCTL_OBS

    // Basic accessors.

    mutating func checkStatus() -> UInt8 { host.inb(statusPort) }                 // ata_sff_check_status
    mutating func altStatus() -> UInt8 { host.inb(altstatusPort) }                 // ata_sff_altstatus
    mutating func pause() { _ = altStatus() }                                      // ata_sff_pause, ata_sff_sync

    mutating func devSelect(_ device: Int) {                                       // ata_sff_dev_select
        host.outb(device == 0 ? 0xA0 : 0xB0, devicePort)
        pause()
    }

    mutating func setDevctl(_ value: UInt8) { host.outb(value, ctlPort) }          // ata_sff_set_devctl

    /// ata_sff_busy_wait(ap, bits, max): polls Status while any of `bits` is set.
    mutating func busyWait(_ bits: UInt8, _ maximum: Int) -> UInt8 {
        var status = checkStatus()
        var tries = 0
        while status != 0xFF, status & bits != 0, tries < maximum {
            status = checkStatus()
            tries += 1
        }
        return status
    }

    mutating func waitIdle() -> UInt8 { busyWait(0x80 | 0x08, 1000) }              // ata_wait_idle (libata.h)

    /// ata_sff_wait_ready → ata_wait_ready with ata_check_ready: 0 when ready, -19 (ENODEV)
    /// for 0xFF, -16 when still busy after the polls a deadline would allow.
    mutating func waitReady() -> Int {
        for _ in 0..<100 {
            let status = checkStatus()
            if status & 0x80 == 0 { return 0 }
            if status == 0xFF { return -19 }
        }
        return -16
    }

    /// ata_devchk: the Hale Landis register echo test.
    mutating func devchk(_ device: Int) -> Bool {
        devSelect(device)
        host.outb(0x55, nsectPort)
        host.outb(0xAA, lbalPort)
        host.outb(0xAA, nsectPort)
        host.outb(0x55, lbalPort)
        host.outb(0x55, nsectPort)
        host.outb(0xAA, lbalPort)
        let nsect = host.inb(nsectPort)
        let lbal = host.inb(lbalPort)
        return nsect == 0x55 && lbal == 0xAA
    }

    struct TaskFile: Equatable {
        var status: UInt8 = 0, error: UInt8 = 0, nsect: UInt8 = 0, lbal: UInt8 = 0, lbam: UInt8 = 0, lbah: UInt8 = 0
        var device: UInt8 = 0
    }

    mutating func tfRead() -> TaskFile {                                           // ata_sff_tf_read (no LBA48)
        TaskFile(status: checkStatus(), error: host.inb(errorPort), nsect: host.inb(nsectPort), lbal: host.inb(lbalPort),
                 lbam: host.inb(lbamPort), lbah: host.inb(lbahPort), device: host.inb(devicePort))
    }

    /// ata_dev_classify (libata-core.c): the signature in LBA Mid/High.
    static func classify(_ tf: TaskFile) -> DeviceClass {
        if tf.lbam == 0, tf.lbah == 0 { return .ata }
        if tf.lbam == 0x14, tf.lbah == 0xEB { return .atapi }
        return .unknown
    }

    /// ata_sff_dev_classify: returns the class and the Error register.
    mutating func devClassify(_ device: Int, present: Bool) -> (DeviceClass, UInt8) {
        devSelect(device)
        let tf = tfRead()
        let err = tf.error
        var diagnosticFailed = false
        if err == 0 {
            diagnosticFailed = true
        } else if err == 1 || (device == 0 && err == 0x81) {
        } else {
            return (.none, err)
        }
        var deviceClass = Self.classify(tf)
        switch deviceClass {
        case .unknown: deviceClass = present && diagnosticFailed ? .ata : .none
        case .ata: if checkStatus() == 0 { deviceClass = .none }
        default: break
        }
        return (deviceClass, err)
    }

    /// ata_bus_softreset: the SRST pulse, then ata_sff_wait_after_reset.
    mutating func busSoftreset(devmask: Int) -> (rc: Int, slaveRegisterPolls: Int) {
        setDevctl(ctl)
        setDevctl(ctl | Self.ATA_SRST)
        let statusDuringReset = altStatus()
        setDevctl(ctl)
        lastCtl = ctl
        precondition(statusDuringReset == 0x80, "BSY while SRST is held")
        return waitAfterReset(devmask: devmask)
    }

    /// ata_sff_wait_after_reset (after its 150 ms sleep).
    mutating func waitAfterReset(devmask: Int) -> (rc: Int, slaveRegisterPolls: Int) {
        var rc = waitReady()
        if rc != 0 { return (rc, 0) }
        var polls = 0
        var ret = 0
        if devmask & 2 != 0 {
            devSelect(1)
            for _ in 0..<2 {
                polls += 1
                let nsect = host.inb(nsectPort)
                let lbal = host.inb(lbalPort)
                if nsect == 1, lbal == 1 { break }
            }
            rc = waitReady()
            if rc != 0 {
                if rc != -19 { return (rc, polls) }
                ret = rc
            }
        }
        devSelect(0)
        if devmask & 2 != 0 { devSelect(1) }
        if devmask & 1 != 0 { devSelect(0) }
        return (ret, polls)
    }

    /// ata_sff_softreset: presence by echo, SRST, classification by signature.
    mutating func softreset() -> (rc: Int, classes: [DeviceClass], devmask: Int, slaveRegisterPolls: Int) {
        var devmask = 0
        if devchk(0) { devmask |= 1 }
        if devchk(1) { devmask |= 2 }   // ATA_FLAG_SLAVE_POSS: pata_legacy sets it
        devSelect(0)
        let (rc, polls) = busSoftreset(devmask: devmask)
        if rc != 0, rc != -19 { return (rc, [], devmask, polls) }
        var classes: [DeviceClass] = [.none, .none]
        let (class0, err) = devClassify(0, present: devmask & 1 != 0)
        classes[0] = class0
        if err != 0x81 { classes[1] = devClassify(1, present: devmask & 2 != 0).0 }
        return (0, classes, devmask, polls)
    }

    /// ata_sff_postreset (after ata_std_postreset, which has nothing for PATA).
    mutating func postreset(_ classes: [DeviceClass]) {
        if classes[0] != .none { devSelect(1) }
        if classes[1] != .none { devSelect(0) }
        if classes[0] == .none, classes[1] == .none { return }
        setDevctl(ctl)
        lastCtl = ctl
    }

    mutating func freeze() {                                                       // ata_sff_freeze
        ctl |= Self.ATA_NIEN
        lastCtl = ctl
        setDevctl(ctl)
        _ = checkStatus()
    }

    mutating func irqOn() {                                                        // ata_sff_irq_on
        ctl &= ~Self.ATA_NIEN
        lastCtl = ctl
        setDevctl(ctl)
        _ = waitIdle()
    }

    mutating func thaw() {                                                         // ata_sff_thaw
        _ = checkStatus()
        irqOn()
    }

    /// A taskfile as ata_tf_init and the command builders fill it.
    struct Command {
        var command: UInt8
        var feature: UInt8 = 0
        var nsect: UInt8 = 0
        var lbal: UInt8 = 0, lbam: UInt8 = 0, lbah: UInt8 = 0
        var device: UInt8 = 0xA0
        var polling = false
    }

    /// ata_sff_qc_issue's register part: ata_dev_select(wait), ata_sff_tf_load, ata_sff_exec_command.
    mutating func issue(_ tf: Command) {
        let tfCtl = tf.polling ? ctl | Self.ATA_NIEN : ctl                         // ata_qc_set_polling
        _ = waitIdle()                                                             // ata_dev_select(ap, 0, 1, 0)
        devSelect(0)
        _ = waitIdle()
        if tfCtl != lastCtl {                                                      // ata_sff_tf_load
            setDevctl(tfCtl)
            lastCtl = tfCtl
            _ = waitIdle()
        }
        host.outb(tf.feature, featurePort)
        host.outb(tf.nsect, nsectPort)
        host.outb(tf.lbal, lbalPort)
        host.outb(tf.lbam, lbamPort)
        host.outb(tf.lbah, lbahPort)
        host.outb(tf.device, devicePort)
        _ = waitIdle()
        host.outb(tf.command, commandPort)                                         // ata_sff_exec_command
        pause()
    }

    /// The PIO data-in state machine (ata_sff_hsm_move from HSM_ST) for `blocks` DRQ blocks of
    /// `sectorsPerBlock` sectors, each sector moved by its own ioread16_rep (ata_pio_sector).
    /// `status` is what the pio task or interrupt handler read first. Returns the data and the
    /// final status, or nil on an HSM violation.
    mutating func pioIn(blocks: Int, sectorsPerBlock: Int, firstStatus: UInt8, beforeNextBlock: (inout LibataPort) -> UInt8)
        -> (data: [UInt8], status: UInt8)? {
        var data: [UInt8] = []
        var status = firstStatus
        for block in 0..<blocks {
            guard status & 0x08 != 0, status & 0x21 == 0 else { return nil }
            for _ in 0..<sectorsPerBlock { data += host.insw(dataPort, 256) }
            pause()                                                                // ata_sff_sync
            if block == blocks - 1 { return (data, waitIdle()) }                   // HSM_ST_LAST: ata_wait_idle
            status = beforeNextBlock(&self)
        }
        return (data, status)
    }
}
