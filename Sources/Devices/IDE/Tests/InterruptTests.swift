import Testing
@testable import IDEEmulator

@Suite("INTRQ and its edges")
struct InterruptTests {
    @Test func readingStatusClearsThePendingInterruptButAlternateStatusDoesNot() {
        var host = ATAHost()
        host.issue(ATACommand.flushCache)
        #expect(host.newEdges() == 1)
        #expect(host.channel.interruptLine)
        #expect(host.inb(altstatusPort) == statusIdle)
        #expect(host.channel.interruptLine, "Alternate Status has no side effect")
        #expect(host.inb(statusPort) == statusIdle)
        #expect(host.channel.interruptLine == false)
        #expect(host.newEdges() == 0)
    }

    @Test func nIENMasksTheLineAndClearingItWithAnInterruptPendingRaisesIt() {
        var host = ATAHost()
        host.outb(0x02, ctlPort)
        host.issue(ATACommand.flushCache)
        #expect(host.channel.interruptLine == false)
        #expect(host.newEdges() == 0)
        host.outb(0x00, ctlPort)
        #expect(host.channel.interruptLine, "the device still holds the interrupt")
        #expect(host.newEdges() == 1)
        _ = host.inb(statusPort)
        #expect(host.channel.interruptLine == false)
    }

    @Test func polledCommandsLeaveNothingBehindOnceStatusIsRead() {
        var host = ATAHost()
        host.outb(0x0A, ctlPort)
        host.issue(ATACommand.identifyDevice)
        _ = host.inb(statusPort)
        _ = host.insw(dataPort, 256)
        _ = host.inb(statusPort)
        host.outb(0x08, ctlPort)
        #expect(host.newEdges() == 0, "ata_sff_irq_on after a polled command raises no stray IRQ")
    }

    @Test func aCommandWrittenWhileTheLineIsHighMakesANewEdge() {
        var host = ATAHost()
        host.issue(ATACommand.flushCache)
        #expect(host.newEdges() == 1)
        host.issue(ATACommand.flushCache)
        #expect(host.newEdges() == 1, "the Command write dropped the line before the completion raised it")
    }

    @Test func selectingTheAbsentDevice1ReleasesTheLineAndDevice0ReraisesIt() {
        var host = ATAHost()
        host.issue(ATACommand.flushCache)
        #expect(host.newEdges() == 1)
        host.outb(0xB0, devicePort)
        #expect(host.channel.interruptLine == false)
        #expect(host.inb(statusPort) == 0, "device 0 answers 00h for device 1")
        host.outb(0xA0, devicePort)
        #expect(host.channel.interruptLine, "reading device 1's Status did not acknowledge device 0")
        #expect(host.newEdges() == 1)
    }

    @Test func softwareResetDropsThePendingInterruptAndRaisesNone() {
        var host = ATAHost()
        host.issue(ATACommand.readSectors, lba: 0, count: 2)
        #expect(host.newEdges() == 1)
        host.outb(0x04, ctlPort)
        #expect(host.channel.interruptLine == false)
        #expect(host.inb(altstatusPort) == 0x80)
        host.outb(0x00, ctlPort)
        #expect(host.inb(altstatusPort) == statusIdle, "the transfer is gone")
        #expect(host.newEdges() == 0)
        #expect(host.channel.interruptLine == false)
    }

    @Test func pioInInterruptsBeforeEachBlockAndPioOutAfterEachBlock() {
        var host = ATAHost()
        host.issue(ATACommand.readSectors, lba: 0, count: 4)
        var edges: [UInt64] = []
        for _ in 0..<4 {
            edges.append(host.newEdges())
            _ = host.inb(statusPort)
            _ = host.insw(dataPort, 256)
        }
        edges.append(host.newEdges())
        #expect(edges == [1, 1, 1, 1, 0])

        host.issue(ATACommand.writeSectors, lba: 0, count: 4)
        edges = [host.newEdges()]
        for _ in 0..<4 {
            _ = host.inb(statusPort)
            host.outsw(dataPort, [UInt8](repeating: 0, count: 512))
            edges.append(host.newEdges())
        }
        #expect(edges == [0, 1, 1, 1, 1])
    }

    @Test func nonDataCommandsInterruptOnceAtCompletionEvenWhenTheyFail() {
        for command in [ATACommand.checkPowerMode, ATACommand.idleImmediate, ATACommand.standbyImmediate, ATACommand.idle,
                        ATACommand.standby, ATACommand.flushCache, ATACommand.flushCacheExt, ATACommand.setMultipleMode,
                        ATACommand.executeDeviceDiagnostic, 0x77] {
            var host = ATAHost()
            host.issue(command, count: 8)
            #expect(host.newEdges() == 1, "0x\(String(command, radix: 16))")
        }
    }

    @Test func checkPowerModeFollowsStandbyAndIdle() {
        var host = ATAHost()
        host.issue(ATACommand.checkPowerMode)
        #expect(host.inb(nsectPort) == 0xFF)
        host.issue(ATACommand.standbyImmediate)
        host.issue(ATACommand.checkPowerMode)
        #expect(host.inb(nsectPort) == 0x00)
        host.issue(ATACommand.readVerifySectors, lba: 0, count: 1)
        host.issue(ATACommand.checkPowerMode)
        #expect(host.inb(nsectPort) == 0xFF, "media access leaves Standby")
        host.issue(ATACommand.standby, count: 0)
        host.issue(ATACommand.idleImmediate)
        host.issue(ATACommand.checkPowerMode)
        #expect(host.inb(nsectPort) == 0xFF)
    }
}

@Suite("Absent device 1 and software reset")
struct DeviceSelectionTests {
    @Test func device1ReadsStatusAndErrorZeroButEchoesTheSharedRegisters() {
        var host = ATAHost()
        host.outb(0xB0, devicePort)
        host.outb(0x5A, nsectPort)
        host.outb(0xA5, lbalPort)
        #expect(host.inb(statusPort) == 0)
        #expect(host.inb(altstatusPort) == 0)
        #expect(host.inb(errorPort) == 0)
        #expect(host.inb(nsectPort) == 0x5A)
        #expect(host.inb(lbalPort) == 0xA5)
        #expect(host.inb(devicePort) == 0xB0)
        host.outb(0xA0, devicePort)
        #expect(host.inb(nsectPort) == 0x5A, "device 0 saw the same writes")
        #expect(host.inb(errorPort) == ATAError.diagnosticsPassed)
    }

    @Test func device1IgnoresCommandsAndTheDataRegister() {
        var host = ATAHost()
        host.outb(0xB0, devicePort)
        host.outb(1, nsectPort)
        host.outb(ATACommand.readSectors, commandPort)
        #expect(host.newEdges() == 0)
        #expect(host.insw(dataPort, 4) == [UInt8](repeating: 0xFF, count: 8))
        host.outb(0xA0, devicePort)
        #expect(host.inb(statusPort) == statusIdle, "device 0 did not run it")
        #expect(host.disk.log.isEmpty)
    }

    @Test func selectingDevice1MidTransferHidesTheDataAndDevice0Resumes() {
        var host = ATAHost()
        host.issue(ATACommand.readSectors, lba: 9, count: 1)
        let first = host.insw(dataPort, 100)
        host.outb(0xB0, devicePort)
        #expect(host.insw(dataPort, 10).allSatisfy { $0 == 0xFF })
        host.outb(0xE0, devicePort)
        let rest = host.insw(dataPort, 156)
        #expect(first + rest == host.disk.sector(9))
    }

    @Test func executeDeviceDiagnosticRunsEvenWithDevice1SelectedAndSelectsDevice0() {
        var host = ATAHost()
        host.outb(0xB0, devicePort)
        host.outb(0x33, lbamPort)
        host.outb(ATACommand.executeDeviceDiagnostic, commandPort)
        #expect(host.newEdges() == 1)
        #expect(host.inb(devicePort) & 0x10 == 0)
        #expect(host.inb(errorPort) == 0x01, "device 0 passed, device 1 absent")
        #expect([host.inb(nsectPort), host.inb(lbalPort), host.inb(lbamPort), host.inb(lbahPort)] == [1, 1, 0, 0])
        #expect(host.inb(statusPort) == statusIdle)
    }

    @Test func srstHoldsBSYIgnoresWritesThenLoadsTheSignatureAndKeepsSettings() {
        var host = ATAHost()
        host.issue(ATACommand.setMultipleMode, count: 8)
        host.issue(ATACommand.setFeatures, features: ATASetFeatures.disableWriteCache)
        host.issue(0x99)  // leaves ERR set
        _ = host.newEdges()
        host.outb(0xB0, devicePort)
        host.outb(0x0C, ctlPort)
        #expect(host.inb(statusPort) == 0x80)
        #expect(host.inb(nsectPort) == 0x80, "BSY: command block reads return Status")
        host.outb(0x77, lbamPort)
        host.outb(ATACommand.identifyDevice, commandPort)
        host.outb(0x08, ctlPort)
        #expect(host.inb(statusPort) == statusIdle, "device 0 selected, ERR cleared")
        #expect([host.inb(errorPort), host.inb(nsectPort), host.inb(lbalPort), host.inb(lbamPort), host.inb(lbahPort),
                 host.inb(devicePort)] == [0x01, 1, 1, 0, 0, 0])
        #expect(host.channel.multipleSectors == 8)
        #expect(host.channel.writeCacheEnabled == false)
        #expect(host.newEdges() == 0)
    }

    @Test func powerOnResetRestoresPowerOnSettingsAndKeepsTheEdgeCount() {
        var host = ATAHost()
        host.channel.loadsBlocksLater = true
        host.issue(ATACommand.setMultipleMode, count: 2)
        #expect(host.newEdges() == 1)
        host.channel.powerOnReset()
        #expect(host.channel.multipleSectors == 16)
        #expect(host.newEdges() == 0)
        #expect(host.inb(statusPort) == statusIdle)
        #expect(host.channel.loadsBlocksLater, "the host's choice, not a device setting")
    }
}
