import Testing
@testable import IDEEmulator

@Suite("Port decoding")
struct PortDecodingTests {
    @Test func theChannelClaimsItsEightCommandPortsAndTheControlPort() {
        let primary = IDEChannel(storage: MemoryStorage(sectorCount: 1))
        #expect((0x1F0...0x1F7).allSatisfy { primary.handles(port: UInt16($0)) })
        #expect(primary.handles(port: 0x3F6))
        #expect(!primary.handles(port: 0x1EF) && !primary.handles(port: 0x1F8) && !primary.handles(port: 0x3F7))
        let secondary = IDEChannel(storage: MemoryStorage(sectorCount: 1), location: .secondary)
        #expect(secondary.handles(port: 0x170) && secondary.handles(port: 0x376) && !secondary.handles(port: 0x1F0))
        #expect(IDEChannelLocation.primary.isaIRQ == 14 && IDEChannelLocation.secondary.isaIRQ == 15)
    }

    @Test func wideAccessesToByteRegistersSplitIntoConsecutivePorts() {
        var host = ATAHost()
        host.outw(0x3412, nsectPort)
        #expect(host.inb(nsectPort) == 0x12 && host.inb(lbalPort) == 0x34)
        #expect(host.inw(statusPort) == 0xFF50, "Status, then 0x1F8 which is not ours")
        #expect(host.inl(errorPort) == 0x0034_1201, "Error, Sector Count, LBA Low, LBA Mid")
        #expect(host.inw(ctlPort) == 0xFF50)
    }

    @Test func aByteReadOfTheDataRegisterTakesAWholeWord() {
        var host = ATAHost()
        host.issue(ATACommand.readSectors, lba: 4, count: 1)
        let sector = host.disk.sector(4)
        #expect(host.inb(dataPort) == sector[0])
        #expect(host.inw(dataPort) == UInt16(sector[2]) | UInt16(sector[3]) << 8)
    }

    @Test func invalidSizesReadAllOnesAndWriteNothing() {
        var host = ATAHost()
        for size in [0, 3, 5, 8, -1] {
            #expect(host.channel.read(port: dataPort, size: size) == 0xFFFF_FFFF)
            host.channel.write(port: commandPort, size: size, value: UInt32(ATACommand.flushCache))
            #expect(host.channel.readString(port: dataPort, size: size, count: 4).isEmpty)
            host.channel.writeString(port: commandPort, size: size, bytes: [ATACommand.flushCache])
        }
        #expect(host.disk.log.isEmpty)
        #expect(host.newEdges() == 0)
    }

    @Test func stringIOAtByteRegistersIsElementByElement() {
        var host = ATAHost()
        host.outsw(nsectPort, [0x11, 0x22, 0x33, 0x44])
        #expect(host.inb(nsectPort) == 0x33 && host.inb(lbalPort) == 0x44)
        #expect(host.channel.readString(port: statusPort, size: 1, count: 3) == [statusIdle, statusIdle, statusIdle])
        #expect(host.channel.readString(port: 0x1F8, size: 4, count: 2) == [UInt8](repeating: 0xFF, count: 8))
    }

    @Test func stringRunsAreCappedAtOnePage() {
        var host = ATAHost()
        host.issue(ATACommand.readMultiple, lba: 0, count: 16)
        #expect(host.channel.readString(port: dataPort, size: 2, count: 100_000).count == 4096)
        #expect(host.channel.readString(port: dataPort, size: 4, count: Int.max).count == 4096)
        #expect(host.channel.readString(port: dataPort, size: 2, count: 0).isEmpty)
        #expect(host.channel.readString(port: dataPort, size: 2, count: -5).isEmpty)
    }

    @Test func memoryStorageIsAUsableBackEnd() {
        var channel = IDEChannel(storage: MemoryStorage(sectorCount: 8))
        channel.writeRegister(ATARegister.sectorCount, 2)
        channel.writeRegister(ATARegister.lbaLow, 3)
        channel.writeRegister(ATARegister.device, 0xE0)
        channel.writeRegister(ATARegister.statusCommand, ATACommand.writeSectors)
        channel.writeData([UInt8](repeating: 0xAB, count: 1024))
        #expect(channel.readRegister(ATARegister.statusCommand) == statusIdle)
        #expect(channel.storage.bytes[(3 * 512)..<(5 * 512)].allSatisfy { $0 == 0xAB })
        #expect(channel.storage.bytes[..<(3 * 512)].allSatisfy { $0 == 0 })
        channel.writeRegister(ATARegister.statusCommand, ATACommand.readSectors)
        var buffer = [UInt8](repeating: 0, count: 1024)
        channel.readData(into: &buffer)
        #expect(buffer.allSatisfy { $0 == 0xAB })
    }
}
