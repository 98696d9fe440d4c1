import Testing
@testable import SerialEmulator

/// Register offsets, spelled as in Linux's serial_reg.h.
private let RX: UInt16 = 0, TX: UInt16 = 0, DLL: UInt16 = 0, IER: UInt16 = 1, DLM: UInt16 = 1
private let IIR: UInt16 = 2, FCR: UInt16 = 2, LCR: UInt16 = 3, MCR: UInt16 = 4, LSR: UInt16 = 5
private let MSR: UInt16 = 6, SCR: UInt16 = 7

@Suite("16550A UART: Linux 8250 probing")
struct Serial16550ProbeTests {
    @Test func scratchRegisterHoldsWhatWasWritten() {
        var uart = Serial16550()
        for value: UInt8 in [0x00, 0x55, 0xAA, 0xFF] {
            uart.write(offset: SCR, value: value)
            #expect(uart.read(offset: SCR) == value)
        }
    }

    @Test func ierKeepsOnlyItsFourLowBitsAsTheExistenceTestExpects() {
        var uart = Serial16550()
        uart.write(offset: IER, value: 0)
        #expect(uart.read(offset: IER) & 0x0F == 0)
        uart.write(offset: IER, value: 0x0F)
        #expect(uart.read(offset: IER) & 0x0F == 0x0F)
        uart.write(offset: IER, value: 0xFF)
        #expect(uart.read(offset: IER) == 0x0F, "bits 7:4 (e.g. XScale UUE) read 0 on a 16550A")
    }

    @Test func loopbackWithRTSAndOUT2ReadsCTSAndDCDInMSR() {
        var uart = Serial16550()
        uart.write(offset: MCR, value: 0x10 | 0x0A)
        #expect(uart.read(offset: MSR) & 0xF0 == 0x90)
        uart.write(offset: MCR, value: 0)
    }

    @Test func divisorLatchRoundTripsUnderDLAB() {
        var uart = Serial16550()
        uart.write(offset: IER, value: 0x05)
        uart.write(offset: LCR, value: 0x80 | 0x03)
        uart.write(offset: DLL, value: 0x01)
        uart.write(offset: DLM, value: 0x02)
        #expect(uart.read(offset: DLL) == 0x01)
        #expect(uart.read(offset: DLM) == 0x02)
        #expect(uart.divisor == 0x0201)
        uart.write(offset: LCR, value: 0x03)
        #expect(uart.read(offset: LCR) == 0x03)
        #expect(uart.read(offset: IER) == 0x05, "IER is untouched by DLM writes")
        #expect(uart.takeOutput().isEmpty, "DLL writes are not transmitted")
    }

    @Test func iirShowsFIFOBitsOnceFCREnablesTheFIFO() {
        var uart = Serial16550()
        #expect(uart.read(offset: IIR) == 0x01)
        uart.write(offset: FCR, value: 0x01)
        #expect(uart.read(offset: IIR) == 0xC1)
        #expect(uart.read(offset: IIR) >> 6 == 3, "autoconfig's 16550A test")
        uart.write(offset: FCR, value: 0x00)
        #expect(uart.read(offset: IIR) == 0x01)
    }

    @Test func lsrHasTHREAndTEMTWhenIdle() {
        var uart = Serial16550()
        #expect(uart.read(offset: LSR) == 0x60)
    }

    /// The sequence of autoconfig() and autoconfig_16550a() in drivers/tty/serial/8250/8250_port.c,
    /// with the branch each comparison must take for the port to be typed PORT_16550A.
    @Test func linuxAutoconfigIdentifiesAPlain16550A() {
        var uart = Serial16550()
        // Existence test.
        let savedIER = uart.read(offset: IER)
        uart.write(offset: IER, value: 0)
        let scratch2 = uart.read(offset: IER) & 0x0F
        uart.write(offset: IER, value: 0x0F)
        let scratch3 = uart.read(offset: IER) & 0x0F
        uart.write(offset: IER, value: savedIER)
        #expect(scratch2 == 0 && scratch3 == 0x0F)
        // Loopback test.
        let savedMCR = uart.read(offset: MCR)
        uart.write(offset: MCR, value: 0x10 | 0x0A)
        #expect(uart.read(offset: MSR) & 0xF0 == 0x90)
        uart.write(offset: MCR, value: savedMCR)
        // FIFO probe.
        let savedLCR = uart.read(offset: LCR)
        uart.write(offset: LCR, value: 0xBF)
        uart.write(offset: FCR, value: 0)  // EFR on 16650s
        uart.write(offset: LCR, value: 0)
        uart.write(offset: FCR, value: 0x01)
        #expect(uart.read(offset: IIR) >> 6 == 3, "16550A, not 8250/16450/16550")
        // autoconfig_16550a: no EFR (ST16C650V1, 16650), no NatSemi EXCR1, no 16750, no XScale UUE.
        uart.write(offset: LCR, value: 0x80)
        #expect(uart.read(offset: IIR) != 0)
        uart.write(offset: LCR, value: 0xBF)
        #expect(uart.read(offset: IIR) != 0)
        uart.write(offset: LCR, value: 0)
        let mcr = uart.read(offset: MCR)
        uart.write(offset: LCR, value: 0xE0)
        var excr1 = uart.read(offset: IIR)
        #expect((excr1 ^ mcr) & 0x10 == 0)
        uart.write(offset: LCR, value: 0)
        uart.write(offset: MCR, value: mcr ^ 0x10)
        uart.write(offset: LCR, value: 0xE0)
        excr1 = uart.read(offset: IIR)
        uart.write(offset: LCR, value: 0)
        uart.write(offset: MCR, value: mcr)
        #expect((excr1 ^ mcr) & 0x10 == 0, "not a NatSemi SuperIO")
        uart.write(offset: FCR, value: 0x01 | 0x20)
        let status1 = uart.read(offset: IIR) >> 5
        uart.write(offset: FCR, value: 0x01)
        uart.write(offset: LCR, value: 0x80)
        uart.write(offset: FCR, value: 0x01 | 0x20)
        let status2 = uart.read(offset: IIR) >> 5
        uart.write(offset: FCR, value: 0x01)
        uart.write(offset: LCR, value: 0)
        #expect(!(status1 == 6 && status2 == 7), "not a 16750")
        let canary = uart.read(offset: IER)
        uart.write(offset: IER, value: canary | 0x40)
        #expect(uart.read(offset: IER) & 0x40 == 0, "not an XScale")
        uart.write(offset: IER, value: canary)
        uart.write(offset: LCR, value: savedLCR)
        // Reset.
        uart.write(offset: MCR, value: savedMCR)
        uart.write(offset: FCR, value: 0x01 | 0x02 | 0x04)
        uart.write(offset: FCR, value: 0)
        _ = uart.read(offset: RX)
        #expect(uart.read(offset: LSR) != 0xFF)
    }

    @Test func unknownOffsetsReadAllOnes() {
        var uart = Serial16550()
        #expect(uart.read(offset: 8) == 0xFF)
        uart.write(offset: 9, value: 0x12)
        #expect(uart.read(offset: SCR) == 0)
    }
}

@Suite("16550A UART: transmit and THRE interrupts")
struct Serial16550TransmitTests {
    @Test func transmittedBytesAreCollectedForTheHost() {
        var uart = Serial16550()
        for byte in "hi\n".utf8 { uart.write(offset: TX, value: byte) }
        #expect(uart.takeOutput() == Array("hi\n".utf8))
        #expect(uart.takeOutput().isEmpty)
        #expect(uart.read(offset: LSR) & 0x60 == 0x60, "transmission is instantaneous")
    }

    @Test func enablingTHREInterruptsWhileTHRIsEmptyRaisesOne() {
        var uart = Serial16550()
        uart.write(offset: MCR, value: 0x08)
        #expect(!uart.interruptPending)
        uart.write(offset: IER, value: 0x02)
        #expect(uart.interruptPending)
        #expect(uart.interruptRisingEdges == 1)
    }

    @Test func readingIIRThatReportsTHREClearsIt() {
        var uart = Serial16550()
        uart.write(offset: FCR, value: 0x01)
        uart.write(offset: MCR, value: 0x08)
        uart.write(offset: IER, value: 0x02)
        #expect(uart.read(offset: IIR) == 0xC2)
        #expect(!uart.interruptPending)
        #expect(uart.read(offset: IIR) == 0xC1)
    }

    @Test func writingTHRReRaisesTHREWithAFreshEdge() {
        var uart = Serial16550()
        uart.write(offset: MCR, value: 0x08)
        uart.write(offset: IER, value: 0x02)
        let edges = uart.interruptRisingEdges
        uart.write(offset: TX, value: 0x41)
        #expect(uart.interruptPending)
        #expect(uart.interruptRisingEdges == edges + 1, "the line drops while the byte is sent, then rises")
        _ = uart.read(offset: IIR)
        uart.write(offset: TX, value: 0x42)
        #expect(uart.interruptRisingEdges == edges + 2)
        #expect(uart.takeOutput() == [0x41, 0x42])
    }

    @Test func linuxTHREReassertionTestSeesTheInterruptBothTimes() {
        // serial8250_do_startup's UART_BUG_THRE probe.
        var uart = Serial16550()
        uart.write(offset: FCR, value: 0x01)
        uart.write(offset: IER, value: 0x02)
        let iir1 = uart.read(offset: IIR)
        uart.write(offset: IER, value: 0)
        uart.write(offset: IER, value: 0x02)
        let iir = uart.read(offset: IIR)
        uart.write(offset: IER, value: 0)
        #expect(iir1 & 0x01 == 0)
        #expect(iir & 0x01 == 0)
    }

    @Test func disablingTHREInterruptsHidesThePendingOne() {
        var uart = Serial16550()
        uart.write(offset: MCR, value: 0x08)
        uart.write(offset: IER, value: 0x02)
        uart.write(offset: IER, value: 0x00)
        #expect(!uart.interruptPending)
        #expect(uart.read(offset: IIR) == 0x01)
    }
}

@Suite("16550A UART: receive, priorities and gating")
struct Serial16550ReceiveTests {
    func enabledUART(ier: UInt8) -> Serial16550 {
        var uart = Serial16550()
        uart.write(offset: FCR, value: 0x01)
        uart.write(offset: MCR, value: 0x0B)  // DTR, RTS, OUT2 as Linux sets them
        uart.write(offset: IER, value: ier)
        return uart
    }

    @Test func receivedBytesSetDataReadyAndRaiseRDA() {
        var uart = enabledUART(ier: 0x01)
        #expect(!uart.interruptPending)
        #expect(uart.receive(Array("ok".utf8)) == 2)
        #expect(uart.read(offset: LSR) & 0x01 == 0x01)
        #expect(uart.interruptPending)
        #expect(uart.read(offset: IIR) == 0xC4)
        #expect(uart.read(offset: RX) == UInt8(ascii: "o"))
        #expect(uart.read(offset: RX) == UInt8(ascii: "k"))
        #expect(uart.read(offset: LSR) & 0x01 == 0)
        #expect(!uart.interruptPending)
        #expect(uart.read(offset: IIR) == 0xC1)
    }

    @Test func receivedDataOutranksTHRE() {
        var uart = enabledUART(ier: 0x03)
        uart.receive([0x30])
        #expect(uart.read(offset: IIR) == 0xC4)
        _ = uart.read(offset: RX)
        #expect(uart.read(offset: IIR) == 0xC2)
    }

    @Test func ierBitsGateEachInterruptSource() {
        var uart = enabledUART(ier: 0x00)
        uart.receive([0x30])
        #expect(!uart.interruptPending)
        #expect(uart.read(offset: IIR) == 0xC1)
        uart.write(offset: IER, value: 0x01)
        #expect(uart.interruptPending)
    }

    @Test func out2GatesTheIRQLineButNotIIR() {
        var uart = enabledUART(ier: 0x01)
        uart.write(offset: MCR, value: 0x03)
        uart.receive([0x30])
        #expect(!uart.interruptPending)
        #expect(uart.read(offset: IIR) == 0xC4)
        uart.write(offset: MCR, value: 0x0B)
        #expect(uart.interruptPending)
    }

    @Test func fifoHolds16BytesAndOverrunSetsOEUntilLSRIsRead() {
        var uart = enabledUART(ier: 0x05)
        #expect(uart.receiveSpace == 16)
        #expect(uart.receive([UInt8](repeating: 0x61, count: 20)) == 16)
        #expect(uart.read(offset: IIR) == 0xC6, "line status outranks received data")
        #expect(uart.read(offset: LSR) & 0x03 == 0x03)
        #expect(uart.read(offset: LSR) & 0x02 == 0, "reading LSR clears OE")
        #expect(uart.read(offset: IIR) == 0xC4)
        for _ in 0..<16 { _ = uart.read(offset: RX) }
        #expect(uart.receiveSpace == 16)
    }

    @Test func withoutFIFOsTheReceiverHoldsOneByte() {
        var uart = Serial16550()
        #expect(uart.receive([1, 2]) == 1)
        #expect(uart.read(offset: LSR) & 0x02 == 0x02)
    }

    @Test func fcrClearReceiverEmptiesTheFIFO() {
        var uart = enabledUART(ier: 0x01)
        uart.receive([1, 2, 3])
        uart.write(offset: FCR, value: 0x03)
        #expect(uart.read(offset: LSR) & 0x01 == 0)
        #expect(!uart.interruptPending)
    }

    @Test func loopbackFeedsTransmittedBytesBackWithoutOutputOrIRQ() {
        var uart = enabledUART(ier: 0x01)
        uart.write(offset: MCR, value: 0x1B)
        uart.write(offset: TX, value: 0x5A)
        #expect(uart.takeOutput().isEmpty)
        #expect(uart.read(offset: IIR) == 0xC4)
        #expect(!uart.interruptPending, "loopback disconnects OUT2 from the IRQ line")
        #expect(uart.read(offset: RX) == 0x5A)
    }

    @Test func modemStatusDeltasInterruptUntilMSRIsRead() {
        var uart = enabledUART(ier: 0x08)
        #expect(!uart.interruptPending)
        uart.write(offset: MCR, value: 0x10 | 0x02)  // loopback: DSR and DCD drop, CTS stays
        #expect(uart.read(offset: IIR) == 0xC0)
        let status = uart.read(offset: MSR)
        #expect(status & 0xF0 == 0x10)
        #expect(status & 0x0F == 0x0A, "DDSR and DDCD")
        #expect(uart.read(offset: MSR) & 0x0F == 0)
        #expect(uart.read(offset: IIR) == 0xC1)
    }

    @Test func receiveTransitionCountsOneRisingEdge() {
        var uart = enabledUART(ier: 0x01)
        let edges = uart.interruptRisingEdges
        uart.receive([1])
        uart.receive([2])
        #expect(uart.interruptRisingEdges == edges + 1)
        _ = uart.read(offset: RX)
        _ = uart.read(offset: RX)
        uart.receive([3])
        #expect(uart.interruptRisingEdges == edges + 2)
    }
}
