import SerialEmulator
import Testing

/// What the UART keeps across a parent restart (Docs/architecture.md, "A parent that restarts").
@Suite("16550A UART: configuration kept across a parent restart")
struct ConfigurationTests {
    /// Linux's 8250 driver after probing: 8N1 at 115200 baud, FIFOs on, OUT2 and RTS/DTR set,
    /// THRE and received-data interrupts enabled, and a scratch value.
    static func configured() -> Serial16550 {
        var uart = Serial16550()
        uart.write(offset: UARTRegister.lineControl, value: UARTRegister.lcrDLAB | 0x03)
        uart.write(offset: UARTRegister.data, value: 0x01)
        uart.write(offset: UARTRegister.interruptEnable, value: 0x00)
        uart.write(offset: UARTRegister.lineControl, value: 0x03)
        uart.write(offset: UARTRegister.interruptIdentification, value: UARTRegister.fcrEnableFIFO)
        uart.write(offset: UARTRegister.modemControl, value: UARTRegister.mcrOUT2 | UARTRegister.mcrRTS | UARTRegister.mcrDTR)
        uart.write(offset: UARTRegister.scratch, value: 0xA5)
        uart.write(offset: UARTRegister.interruptEnable,
                   value: UARTRegister.ierTransmitterEmpty | UARTRegister.ierReceivedData)
        _ = uart.read(offset: UARTRegister.interruptIdentification)  // the THRE interrupt, taken
        return uart
    }

    @Test func aRestoredUARTReadsAsTheGuestLeftIt() {
        let before = Self.configured()
        var after = Serial16550()
        let taken = after.restore(configuration: before.configuration)
        #expect(taken)
        for offset in [UARTRegister.interruptEnable, UARTRegister.lineControl, UARTRegister.modemControl, UARTRegister.scratch] {
            var original = before
            #expect(after.read(offset: offset) == original.read(offset: offset), "register \(offset)")
        }
        #expect(after.configuration == before.configuration)
        after.write(offset: UARTRegister.lineControl, value: UARTRegister.lcrDLAB | 0x03)
        #expect(after.read(offset: UARTRegister.data) == 0x01 && after.read(offset: UARTRegister.interruptEnable) == 0,
                "the divisor")
    }

    /// The transmitter is empty after the restart: a driver that waits for THRE gets its interrupt.
    @Test func aRestoredUARTRaisesTheTransmitterEmptyInterruptItsDriverWaitsFor() {
        var after = Serial16550()
        let edges = after.interruptRisingEdges
        let taken = after.restore(configuration: Self.configured().configuration)
        #expect(taken)
        #expect(after.interruptPending && after.interruptRisingEdges == edges &+ 1)
        #expect(after.read(offset: UARTRegister.interruptIdentification) & 0x0F == UARTRegister.iirTransmitterEmpty)
    }

    @Test(arguments: [[], [1, 2, 3], [2, 0, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0, 0]] as [[UInt8]])
    func bytesOfAnyOtherFormAreRefused(_ bytes: [UInt8]) {
        var uart = Serial16550()
        let taken = uart.restore(configuration: bytes)
        #expect(!taken)
        #expect(uart.configuration == Serial16550().configuration, "nothing changed")
    }
}
