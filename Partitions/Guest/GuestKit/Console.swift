import HyperV

/// Line-buffered output to the root's debug port: each completed line is one 32-bit OUT of
/// the GPA of a `DebugRecord`, so a line costs a single exit.
public enum Console {
    nonisolated(unsafe) static var record: UnsafeMutableRawPointer? = nil
    nonisolated(unsafe) static var length = 0

    static func buffer() -> UnsafeMutableRawPointer {
        if let record { return record }
        let allocated = Heap.allocate(size: DebugRecord.textOffset + DebugRecord.maximumLength, alignment: 16)!
        record = allocated
        return allocated
    }

    public static func write(byte: UInt8) {
        if byte == 0x0A {
            flush()
            return
        }
        if length == DebugRecord.maximumLength { flush() }
        buffer().storeBytes(of: byte, toByteOffset: DebugRecord.textOffset + length, as: UInt8.self)
        length += 1
    }

    public static func flush() {
        let record = buffer()
        record.storeBytes(of: UInt32(length), toByteOffset: DebugRecord.lengthOffset, as: UInt32.self)
        CPU.out32(PlatformPorts.debug, UInt32(truncatingIfNeeded: UInt(bitPattern: record)))
        length = 0
    }
}
