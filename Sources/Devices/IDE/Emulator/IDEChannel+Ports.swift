/// Port I/O as a processor issues it: absolute ports, 1-, 2- or 4-byte accesses, and string
/// I/O runs (REP INS/OUTS) as one call.
///
/// Only the data register decodes 16- and 32-bit cycles (a 32-bit access moves two words, as
/// PCI IDE controllers with 32-bit PIO do). Any other multi-byte access is split into byte
/// accesses at consecutive ports, as the ISA bus splits it for an 8-bit register, so a 16-bit
/// read of Status also reads the port after it (0xFF: not this device's).
extension IDEChannel {
    /// Whether `port` belongs to this channel (the command block and the control port).
    public func handles(port: UInt16) -> Bool {
        location.commandBlockPorts.contains(port) || port == location.controlPort
    }

    /// An IN of `size` bytes (1, 2 or 4) at `port`; other sizes read all ones.
    public mutating func read(port: UInt16, size: Int) -> UInt32 {
        guard size == 1 || size == 2 || size == 4 else { return 0xFFFF_FFFF }
        if port == location.commandBlockBase, size > 1 {
            return size == 2 ? UInt32(readData16()) : readData32()
        }
        var value: UInt32 = 0
        for index in 0..<size { value |= UInt32(readByte(at: Int(port) + index)) << (8 * index) }
        return value
    }

    /// An OUT of the low `size` bytes (1, 2 or 4) of `value` at `port`; other sizes are ignored.
    public mutating func write(port: UInt16, size: Int, value: UInt32) {
        guard size == 1 || size == 2 || size == 4 else { return }
        if port == location.commandBlockBase, size > 1 {
            if size == 2 { writeData16(UInt16(truncatingIfNeeded: value)) } else { writeData32(value) }
            return
        }
        for index in 0..<size { writeByte(UInt8(truncatingIfNeeded: value >> (8 * index)), at: Int(port) + index) }
    }

    /// A string IN (REP INSB/INSW/INSD) of `count` elements of `size` bytes: the bytes in the
    /// order they were read, at most `maximumStringBytes`. Runs at the data register move as
    /// one `readData(into:)`.
    public mutating func readString(port: UInt16, size: Int, count: Int) -> [UInt8] {
        guard size == 1 || size == 2 || size == 4, count > 0 else { return [] }
        let elements = min(count, Self.maximumStringBytes / size)
        if port == location.commandBlockBase, size > 1 {
            var bytes = [UInt8](repeating: 0xFF, count: elements * size)
            readData(into: &bytes)
            return bytes
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(elements * size)
        for _ in 0..<elements {
            let value = read(port: port, size: size)
            for index in 0..<size { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * index))) }
        }
        return bytes
    }

    /// A string OUT (REP OUTSB/OUTSW/OUTSD) of `bytes`, elements of `size` bytes; a trailing
    /// partial element and anything beyond `maximumStringBytes` are dropped. Runs at the data
    /// register move as one `writeData(_:)`.
    public mutating func writeString(port: UInt16, size: Int, bytes: [UInt8]) {
        guard size == 1 || size == 2 || size == 4 else { return }
        let usable = min(bytes.count, Self.maximumStringBytes) / size * size
        if port == location.commandBlockBase, size > 1 {
            writeData(bytes[..<usable])
            return
        }
        var offset = 0
        while offset < usable {
            var value: UInt32 = 0
            for index in 0..<size { value |= UInt32(bytes[offset + index]) << (8 * index) }
            write(port: port, size: size, value: value)
            offset += size
        }
    }

    // MARK: Internals

    private mutating func readByte(at port: Int) -> UInt8 {
        let base = Int(location.commandBlockBase)
        if (base..<(base + 8)).contains(port) { return readRegister(UInt16(port - base)) }
        if port == Int(location.controlPort) { return readAlternateStatus() }
        return 0xFF
    }

    private mutating func writeByte(_ value: UInt8, at port: Int) {
        let base = Int(location.commandBlockBase)
        if (base..<(base + 8)).contains(port) {
            writeRegister(UInt16(port - base), value)
        } else if port == Int(location.controlPort) {
            writeDeviceControl(value)
        }
    }
}
