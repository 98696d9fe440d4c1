/// A 16550A UART as a pure state machine: register reads and writes in, transmitted bytes and
/// an interrupt level out. No I/O, no threads, no clocks.
///
/// Transmission is instantaneous, so THRE and TEMT always read set and a THR write raises the
/// THRE interrupt again at once. The 16-byte receive FIFO signals "received data available"
/// whenever it holds data (there is no clock for the character-timeout interrupt; Linux treats
/// both alike). Outside loopback the modem inputs read as a connected line: CTS, DSR and DCD.
///
/// The IRQ line (`interruptPending`) follows the 8250 wiring of PCs: the UART's interrupt output
/// gated by OUT2, which loopback disconnects. COM1 is ISA IRQ 4, edge-triggered at the IOAPIC,
/// and some accesses drop and re-raise the line within one call (a THR write empties THR again
/// at once), so `interruptRisingEdges` counts every low-to-high transition. After each access:
/// if the count changed, deliver an edge; otherwise, if the level fell, lower the line.
public struct Serial16550: Sendable {
    /// COM1's base port.
    public static let com1Port: UInt16 = 0x3F8
    /// COM1's ISA IRQ.
    public static let com1IRQ = 4
    /// Receive FIFO depth.
    public static let fifoCapacity = 16

    private var interruptEnable: UInt8 = 0
    private var lineControl: UInt8 = 0
    private var modemControl: UInt8 = 0
    private var scratch: UInt8 = 0
    private var divisorLow: UInt8 = 0x0C  // 9600 baud at the PC's 1.8432 MHz clock
    private var divisorHigh: UInt8 = 0
    private var fifosEnabled = false
    private var overrun = false
    private var transmitterEmptyInterrupt = false
    private var modemStatusDeltas: UInt8 = 0
    /// At most `fifoCapacity` bytes, so removing from the front is cheap.
    private var receiveBuffer: [UInt8] = []
    private var transmitted: [UInt8] = []
    private var lineLevel = false

    /// Low-to-high transitions of the IRQ line since reset (wrapping).
    public private(set) var interruptRisingEdges: UInt64 = 0

    /// A UART in its power-on state: interrupts and FIFOs disabled, DLAB clear, nothing received.
    public init() {}

    // MARK: Register access

    /// Reads register `offset` (0-7 from the base port); other offsets read 0xFF.
    public mutating func read(offset: UInt16) -> UInt8 {
        defer { updateLine() }
        switch offset {
        case UARTRegister.data:
            if dlab { return divisorLow }
            return popReceived() ?? 0
        case UARTRegister.interruptEnable:
            return dlab ? divisorHigh : interruptEnable
        case UARTRegister.interruptIdentification:
            let identification = currentInterrupt
            if identification == UARTRegister.iirTransmitterEmpty { transmitterEmptyInterrupt = false }
            return identification | (fifosEnabled ? UARTRegister.iirFIFOsEnabled : 0)
        case UARTRegister.lineControl:
            return lineControl
        case UARTRegister.modemControl:
            return modemControl
        case UARTRegister.lineStatus:
            let status = lineStatus
            overrun = false
            return status
        case UARTRegister.modemStatus:
            let status = modemLines | modemStatusDeltas
            modemStatusDeltas = 0
            return status
        case UARTRegister.scratch:
            return scratch
        default:
            return 0xFF
        }
    }

    /// Writes `value` to register `offset` (0-7 from the base port); other offsets are ignored,
    /// as are writes to LSR and MSR.
    public mutating func write(offset: UInt16, value: UInt8) {
        defer { updateLine() }
        switch offset {
        case UARTRegister.data:
            if dlab {
                divisorLow = value
            } else {
                transmit(value)
            }
        case UARTRegister.interruptEnable:
            if dlab {
                divisorHigh = value
            } else {
                let enabling = value & ~interruptEnable
                interruptEnable = value & 0x0F
                // Enabling THRE interrupts while THR is empty (always, here) raises one at once.
                if enabling & UARTRegister.ierTransmitterEmpty != 0 { transmitterEmptyInterrupt = true }
            }
        case UARTRegister.interruptIdentification:
            writeFIFOControl(value)
        case UARTRegister.lineControl:
            lineControl = value
        case UARTRegister.modemControl:
            let linesBefore = modemLines
            modemControl = value & 0x1F
            noteModemLineChanges(from: linesBefore)
        case UARTRegister.scratch:
            scratch = value
        default:
            break
        }
    }

    // MARK: Host side

    /// The bytes the guest transmitted since the last call; drain it after each write, as it
    /// grows until taken.
    public mutating func takeOutput() -> [UInt8] {
        // Called on every register access: hand the buffer over without allocating when empty.
        guard !transmitted.isEmpty else { return [] }
        defer { transmitted = [] }
        return transmitted
    }

    /// Free space in the receive FIFO; feed at most this many bytes to avoid overruns.
    public var receiveSpace: Int { capacity - receivedCount }

    /// Queues bytes arriving on the line. Bytes beyond the FIFO's space are lost and set the
    /// overrun error, as on the real part.
    /// - Returns: how many bytes were queued.
    @discardableResult
    public mutating func receive(_ bytes: [UInt8]) -> Int {
        defer { updateLine() }
        return enqueue(bytes)
    }

    /// The level of the IRQ line: an enabled interrupt is pending and OUT2 connects it (and
    /// loopback does not disconnect it).
    public var interruptPending: Bool {
        currentInterrupt != UARTRegister.iirNoInterrupt
            && modemControl & UARTRegister.mcrOUT2 != 0 && modemControl & UARTRegister.mcrLoopback == 0
    }

    /// The divisor latch, `DLM << 8 | DLL`.
    public var divisor: UInt16 { UInt16(divisorHigh) << 8 | UInt16(divisorLow) }

    // MARK: Internals

    private var dlab: Bool { lineControl & UARTRegister.lcrDLAB != 0 }
    private var loopback: Bool { modemControl & UARTRegister.mcrLoopback != 0 }
    private var capacity: Int { fifosEnabled ? Self.fifoCapacity : 1 }
    private var receivedCount: Int { receiveBuffer.count }

    private var lineStatus: UInt8 {
        (receivedCount > 0 ? UARTRegister.lsrDataReady : 0) | (overrun ? UARTRegister.lsrOverrun : 0)
            | UARTRegister.lsrTransmitterHoldingEmpty | UARTRegister.lsrTransmitterEmpty
    }

    /// IIR bits 3:0 for the highest-priority enabled interrupt.
    private var currentInterrupt: UInt8 {
        if interruptEnable & UARTRegister.ierLineStatus != 0, overrun { return UARTRegister.iirLineStatus }
        if interruptEnable & UARTRegister.ierReceivedData != 0, receivedCount > 0 { return UARTRegister.iirReceivedData }
        if interruptEnable & UARTRegister.ierTransmitterEmpty != 0, transmitterEmptyInterrupt {
            return UARTRegister.iirTransmitterEmpty
        }
        if interruptEnable & UARTRegister.ierModemStatus != 0, modemStatusDeltas != 0 { return UARTRegister.iirModemStatus }
        return UARTRegister.iirNoInterrupt
    }

    /// MSR bits 7:4. Loopback wires RTS to CTS, DTR to DSR, OUT1 to RI and OUT2 to DCD.
    private var modemLines: UInt8 {
        guard loopback else { return UARTRegister.msrCTS | UARTRegister.msrDSR | UARTRegister.msrDCD }
        var lines: UInt8 = 0
        if modemControl & UARTRegister.mcrRTS != 0 { lines |= UARTRegister.msrCTS }
        if modemControl & UARTRegister.mcrDTR != 0 { lines |= UARTRegister.msrDSR }
        if modemControl & UARTRegister.mcrOUT1 != 0 { lines |= UARTRegister.msrRI }
        if modemControl & UARTRegister.mcrOUT2 != 0 { lines |= UARTRegister.msrDCD }
        return lines
    }

    /// Sets MSR delta bits for lines that changed: DCTS, DDSR and DDCD on any change, TERI
    /// when RI goes from on to off.
    private mutating func noteModemLineChanges(from before: UInt8) {
        let after = modemLines
        let changed = before ^ after
        if changed & UARTRegister.msrCTS != 0 { modemStatusDeltas |= 0x01 }
        if changed & UARTRegister.msrDSR != 0 { modemStatusDeltas |= 0x02 }
        if before & UARTRegister.msrRI != 0, after & UARTRegister.msrRI == 0 { modemStatusDeltas |= 0x04 }
        if changed & UARTRegister.msrDCD != 0 { modemStatusDeltas |= 0x08 }
    }

    private mutating func transmit(_ byte: UInt8) {
        // Writing THR clears a THRE interrupt; the line may fall while the byte is "sent".
        transmitterEmptyInterrupt = false
        updateLine()
        if loopback {
            enqueue([byte])
        } else {
            transmitted.append(byte)
        }
        // The byte left at once; THR is empty again, so THRE interrupts anew.
        transmitterEmptyInterrupt = true
    }

    @discardableResult
    private mutating func enqueue(_ bytes: [UInt8]) -> Int {
        let accepted = min(bytes.count, receiveSpace)
        receiveBuffer += bytes.prefix(accepted)
        if accepted < bytes.count { overrun = true }
        return accepted
    }

    /// Follows the IRQ line's level and counts its rising edges.
    private mutating func updateLine() {
        let level = interruptPending
        if level, !lineLevel { interruptRisingEdges &+= 1 }
        lineLevel = level
    }

    private mutating func writeFIFOControl(_ value: UInt8) {
        let enable = value & UARTRegister.fcrEnableFIFO != 0
        // Switching between FIFO and 16450 mode empties the FIFOs, as does the clear bit.
        if enable != fifosEnabled || value & UARTRegister.fcrClearReceiver != 0 {
            receiveBuffer.removeAll()
        }
        fifosEnabled = enable
    }

    private mutating func popReceived() -> UInt8? {
        receiveBuffer.isEmpty ? nil : receiveBuffer.removeFirst()
    }

    // MARK: Configuration kept across a parent restart

    /// What the guest programmed (IER, LCR, MCR, scratch, divisor, FIFO enable), as bytes a
    /// parent that restarts gives back to `restore(configuration:)`: the guest's driver then
    /// finds the UART as it left it. Format version first.
    public var configuration: [UInt8] {
        [1, interruptEnable, lineControl, modemControl, scratch, divisorLow, divisorHigh, fifosEnabled ? 1 : 0]
    }

    /// Restores a configuration saved under an earlier parent. The transmitter is empty after
    /// the restart, so a driver waiting for THRE gets its interrupt (as when it enables THRE
    /// interrupts). Bytes of any other form are refused.
    /// - Returns: whether they were taken.
    public mutating func restore(configuration bytes: [UInt8]) -> Bool {
        guard bytes.count == 8, bytes[0] == 1 else { return false }
        interruptEnable = bytes[1] & 0x0F
        lineControl = bytes[2]
        modemControl = bytes[3] & 0x1F
        scratch = bytes[4]
        divisorLow = bytes[5]
        divisorHigh = bytes[6]
        fifosEnabled = bytes[7] != 0
        if interruptEnable & UARTRegister.ierTransmitterEmpty != 0 { transmitterEmptyInterrupt = true }
        updateLine()
        return true
    }
}
