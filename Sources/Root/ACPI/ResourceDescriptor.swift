import HyperV

/// One resource descriptor of a `_CRS` buffer (ACPI 6.4 §6.4 "Resource Data Types for ACPI").
/// The end tag is not a case: `ResourceTemplate` adds and strips it.
public enum ResourceDescriptor: Equatable, Sendable {
    /// I/O Port Descriptor (small item 0x08, 7 bytes), ASL `IO()`.
    case io(IOPort)
    /// IRQ Descriptor without flags (small item 0x04, 2 bytes), ASL `IRQNoFlags()`: edge-triggered,
    /// active-high, exclusive. Bit n of `mask` is IRQ n.
    case irq(mask: UInt16)
    /// QWord Address Space Descriptor of memory type (large item 0x0A), ASL `QWordMemory()`.
    case qwordMemory(QWordMemory)
    /// Any other descriptor, kept whole (tag byte included); only the decoder produces it.
    case other([UInt8])

    /// The fields of an I/O port descriptor.
    public struct IOPort: Equatable, Sendable {
        /// Decodes all 16 address bits (Decode16) rather than 10.
        public var decodes16Bits: Bool
        /// The lowest and highest base address the device may use.
        public var minimum: UInt16
        public var maximum: UInt16
        /// The base address's alignment.
        public var alignment: UInt8
        /// The number of contiguous ports.
        public var length: UInt8

        public init(decodes16Bits: Bool = true, minimum: UInt16, maximum: UInt16, alignment: UInt8, length: UInt8) {
            self.decodes16Bits = decodes16Bits
            self.minimum = minimum
            self.maximum = maximum
            self.alignment = alignment
            self.length = length
        }

        /// A device fixed at `base` with `length` ports.
        public static func fixed(base: UInt16, length: UInt8) -> IOPort {
            IOPort(minimum: base, maximum: base, alignment: 1, length: length)
        }
    }

    /// The fields of a QWord memory range with fixed minimum and maximum addresses.
    public struct QWordMemory: Equatable, Sendable {
        /// Consumer (a device's own range) rather than producer (a bridge's window).
        public var isConsumer: Bool
        /// Read/write rather than read-only.
        public var isWritable: Bool
        /// _MEM: 0 non-cacheable, 1 cacheable, 2 write-combining, 3 prefetchable.
        public var cacheability: UInt8
        /// Address decode granularity (a bit mask; 0 for fixed ranges).
        public var granularity: UInt64
        /// The first byte of the range.
        public var minimum: UInt64
        /// The last byte of the range.
        public var maximum: UInt64
        /// Offset from the secondary to the primary side of a bridge; 0 here.
        public var translation: UInt64
        /// The range's size in bytes.
        public var length: UInt64

        public init(isConsumer: Bool, isWritable: Bool, cacheability: UInt8, granularity: UInt64,
                    minimum: UInt64, maximum: UInt64, translation: UInt64, length: UInt64) {
            self.isConsumer = isConsumer
            self.isWritable = isWritable
            self.cacheability = cacheability
            self.granularity = granularity
            self.minimum = minimum
            self.maximum = maximum
            self.translation = translation
            self.length = length
        }

        /// A non-cacheable read/write MMIO range that the device consumes.
        public static func mmio(_ range: Range<UInt64>) -> QWordMemory {
            QWordMemory(isConsumer: true, isWritable: true, cacheability: 0, granularity: 0,
                        minimum: range.lowerBound, maximum: range.upperBound &- 1, translation: 0,
                        length: range.upperBound &- range.lowerBound)
        }
    }

    /// Small item tags: (type << 3) | length.
    static let ioTag: UInt8 = 0x08 << 3 | 7
    static let irqTag: UInt8 = 0x04 << 3 | 2
    static let endTag: UInt8 = 0x0F << 3 | 1
    /// Large item tag: 0x80 | type.
    static let qwordAddressTag: UInt8 = 0x8A
    /// Bytes after the 3-byte large item header of a QWord Address Space Descriptor.
    static let qwordAddressLength = 43

    /// The descriptor's bytes.
    public var encoded: [UInt8] {
        switch self {
        case .io(let port):
            var bytes = [Self.ioTag, port.decodes16Bits ? 1 : 0]
            bytes.appendLittleEndian(port.minimum)
            bytes.appendLittleEndian(port.maximum)
            bytes += [port.alignment, port.length]
            return bytes
        case .irq(let mask):
            var bytes = [Self.irqTag]
            bytes.appendLittleEndian(mask)
            return bytes
        case .qwordMemory(let memory):
            var bytes = [Self.qwordAddressTag]
            bytes.appendLittleEndian(UInt16(Self.qwordAddressLength))
            // Resource type 0 (memory); general flags: MaxFixed | MinFixed | PosDecode | consumer.
            bytes += [0, 0x0C | (memory.isConsumer ? 1 : 0),
                      (memory.cacheability & 0x3) << 1 | (memory.isWritable ? 1 : 0)]
            for field in [memory.granularity, memory.minimum, memory.maximum, memory.translation, memory.length] {
                bytes.appendLittleEndian(field)
            }
            return bytes
        case .other(let bytes):
            return bytes
        }
    }
}
