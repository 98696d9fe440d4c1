/// 16550A register offsets from the port base and the bits this model implements
/// (National Semiconductor PC16550D datasheet; Linux include/uapi/linux/serial_reg.h).
public enum UARTRegister {
    /// Read: receiver buffer (RBR). Write: transmitter holding (THR). With DLAB: divisor latch low (DLL).
    public static let data: UInt16 = 0
    /// Interrupt enable (IER). With DLAB: divisor latch high (DLM).
    public static let interruptEnable: UInt16 = 1
    /// Read: interrupt identification (IIR). Write: FIFO control (FCR).
    public static let interruptIdentification: UInt16 = 2
    /// Line control (LCR).
    public static let lineControl: UInt16 = 3
    /// Modem control (MCR).
    public static let modemControl: UInt16 = 4
    /// Line status (LSR).
    public static let lineStatus: UInt16 = 5
    /// Modem status (MSR).
    public static let modemStatus: UInt16 = 6
    /// Scratch (SCR).
    public static let scratch: UInt16 = 7

    /// IER: received data available.
    public static let ierReceivedData: UInt8 = 0x01
    /// IER: transmitter holding register empty.
    public static let ierTransmitterEmpty: UInt8 = 0x02
    /// IER: receiver line status.
    public static let ierLineStatus: UInt8 = 0x04
    /// IER: modem status.
    public static let ierModemStatus: UInt8 = 0x08

    /// IIR: no interrupt pending (bit 0 set).
    public static let iirNoInterrupt: UInt8 = 0x01
    /// IIR identification (bits 3:0), highest priority first: receiver line status.
    public static let iirLineStatus: UInt8 = 0x06
    /// IIR identification: received data available.
    public static let iirReceivedData: UInt8 = 0x04
    /// IIR identification: transmitter holding register empty.
    public static let iirTransmitterEmpty: UInt8 = 0x02
    /// IIR identification: modem status.
    public static let iirModemStatus: UInt8 = 0x00
    /// IIR bits 7:6: FIFOs enabled.
    public static let iirFIFOsEnabled: UInt8 = 0xC0

    /// FCR: enable the FIFOs.
    public static let fcrEnableFIFO: UInt8 = 0x01
    /// FCR: clear the receive FIFO.
    public static let fcrClearReceiver: UInt8 = 0x02
    /// FCR: clear the transmit FIFO.
    public static let fcrClearTransmitter: UInt8 = 0x04

    /// LCR: divisor latch access bit.
    public static let lcrDLAB: UInt8 = 0x80

    /// MCR: data terminal ready.
    public static let mcrDTR: UInt8 = 0x01
    /// MCR: request to send.
    public static let mcrRTS: UInt8 = 0x02
    /// MCR: OUT1, a spare output (RI in loopback).
    public static let mcrOUT1: UInt8 = 0x04
    /// MCR: OUT2, which gates the UART's IRQ on PCs.
    public static let mcrOUT2: UInt8 = 0x08
    /// MCR: loopback diagnostic mode.
    public static let mcrLoopback: UInt8 = 0x10

    /// LSR: data ready.
    public static let lsrDataReady: UInt8 = 0x01
    /// LSR: overrun error.
    public static let lsrOverrun: UInt8 = 0x02
    /// LSR: transmitter holding register empty (THRE).
    public static let lsrTransmitterHoldingEmpty: UInt8 = 0x20
    /// LSR: transmitter empty (TEMT).
    public static let lsrTransmitterEmpty: UInt8 = 0x40

    /// MSR: the delta bits 3:0 (DCTS, DDSR, TERI, DDCD), cleared by reading MSR.
    public static let msrDeltaMask: UInt8 = 0x0F
    /// MSR: clear to send.
    public static let msrCTS: UInt8 = 0x10
    /// MSR: data set ready.
    public static let msrDSR: UInt8 = 0x20
    /// MSR: ring indicator.
    public static let msrRI: UInt8 = 0x40
    /// MSR: data carrier detect.
    public static let msrDCD: UInt8 = 0x80
}
