import HyperV

/// A Microsoft GUID as VMBus carries it on the wire (Docs/hyperv-interface.md §6.4).
///
/// The value is stored as its 16 wire bytes. The wire form is mixed-endian: the first three
/// fields (4, 2 and 2 bytes) are little-endian and the last 8 bytes are in text order, so
/// "0e0b6031-5213-…" starts with the bytes 31 60 0b 0e. An RFC 4122 byte array (such as
/// Foundation's `UUID`) has those first three fields swapped.
public struct GUID: Hashable, Sendable, CustomStringConvertible {
    /// Wire bytes 0...7 as a little-endian integer.
    private var low: UInt64
    /// Wire bytes 8...15 as a little-endian integer.
    private var high: UInt64

    /// The size of a GUID on the wire.
    public static let size = 16

    /// A GUID from the four fields of its text form, e.g.
    /// `GUID(0x0e0b6031, 0x5213, 0x4934, 0x818b_38d9_0ced_39db)` for "0e0b6031-5213-4934-818b-38d90ced39db".
    /// `data4` holds the last 8 bytes in text order (most significant byte first).
    public init(_ data1: UInt32, _ data2: UInt16, _ data3: UInt16, _ data4: UInt64) {
        low = UInt64(data1) | UInt64(data2) << 32 | UInt64(data3) << 48
        high = data4.byteSwapped
    }

    /// A GUID from exactly 16 wire bytes, or `nil` for any other count.
    public init?(wireBytes: [UInt8]) {
        guard wireBytes.count == GUID.size,
            let low = wireBytes.littleEndian(UInt64.self, at: 0),
            let high = wireBytes.littleEndian(UInt64.self, at: 8)
        else { return nil }
        self.low = low
        self.high = high
    }

    /// Parses the canonical text form "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (either case);
    /// `nil` if the text is anything else.
    public init?(_ text: String) {
        // Hex digits of the text in order; hyphens must sit at 8, 13, 18 and 23.
        var nibbles: [UInt8] = []
        nibbles.reserveCapacity(32)
        var position = 0
        for character in text.utf8 {
            defer { position += 1 }
            if position == 8 || position == 13 || position == 18 || position == 23 {
                guard character == UInt8(ascii: "-") else { return nil }
                continue
            }
            guard position < 36, let nibble = GUID.hexValue(character) else { return nil }
            nibbles.append(nibble)
        }
        guard position == 36, nibbles.count == 32 else { return nil }
        func field(_ first: Int, _ count: Int) -> UInt64 {
            var value: UInt64 = 0
            for index in first..<(first + count) { value = value << 4 | UInt64(nibbles[index]) }
            return value
        }
        self.init(
            UInt32(truncatingIfNeeded: field(0, 8)),
            UInt16(truncatingIfNeeded: field(8, 4)),
            UInt16(truncatingIfNeeded: field(12, 4)),
            field(16, 16))
    }

    /// The 16 wire bytes.
    public var wireBytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(GUID.size)
        bytes.appendLittleEndian(low)
        bytes.appendLittleEndian(high)
        return bytes
    }

    /// Stores the wire bytes at `offset` of a buffer that already has room for them.
    public func store(into buffer: inout [UInt8], at offset: Int) {
        buffer.storeLittleEndian(low, at: offset)
        buffer.storeLittleEndian(high, at: offset + 8)
    }

    /// The canonical lowercase text form, e.g. "0e0b6031-5213-4934-818b-38d90ced39db".
    public var description: String {
        let data1 = UInt32(truncatingIfNeeded: low)
        let data2 = UInt16(truncatingIfNeeded: low >> 32)
        let data3 = UInt16(truncatingIfNeeded: low >> 48)
        let data4 = high.byteSwapped
        var text: [UInt8] = []
        text.reserveCapacity(36)
        GUID.appendHex(UInt64(data1), digits: 8, to: &text)
        text.append(UInt8(ascii: "-"))
        GUID.appendHex(UInt64(data2), digits: 4, to: &text)
        text.append(UInt8(ascii: "-"))
        GUID.appendHex(UInt64(data3), digits: 4, to: &text)
        text.append(UInt8(ascii: "-"))
        GUID.appendHex(data4 >> 48, digits: 4, to: &text)
        text.append(UInt8(ascii: "-"))
        GUID.appendHex(data4, digits: 12, to: &text)
        return String(decoding: text, as: UTF8.self)
    }

    private static func hexValue(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): character - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func appendHex(_ value: UInt64, digits: Int, to text: inout [UInt8]) {
        var shift = (digits - 1) * 4
        while shift >= 0 {
            let nibble = UInt8(truncatingIfNeeded: value >> UInt64(shift)) & 0xF
            text.append(nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10)
            shift -= 4
        }
    }
}

// MARK: - Device classes (interface types) Linux 6.1 binds; Docs/hyperv-interface.md §14.

extension GUID {
    /// Shutdown integration component, 0e0b6031-5213-4934-818b-38d90ced39db (hv_utils).
    public static let shutdown = GUID(0x0e0b_6031, 0x5213, 0x4934, 0x818b_38d9_0ced_39db)
    /// Time synchronization integration component, 9527e630-d0ae-497b-adce-e80ab0175caf (hv_utils).
    public static let timeSync = GUID(0x9527_e630, 0xd0ae, 0x497b, 0xadce_e80a_b017_5caf)
    /// Heartbeat integration component, 57164f39-9115-4e78-ab55-382f3bd5422d (hv_utils).
    public static let heartbeat = GUID(0x5716_4f39, 0x9115, 0x4e78, 0xab55_382f_3bd5_422d)
    /// Key-value pair exchange, a9a0f4e7-5a45-4d96-b827-8a841e8c03e6 (hv_utils).
    public static let kvp = GUID(0xa9a0_f4e7, 0x5a45, 0x4d96, 0xb827_8a84_1e8c_03e6)
    /// Synthetic SCSI controller, ba6163d9-04a1-4d29-b605-72e2ffb1dc7f (hv_storvsc).
    public static let scsi = GUID(0xba61_63d9, 0x04a1, 0x4d29, 0xb605_72e2_ffb1_dc7f)
    /// Synthetic network adapter, f8615163-df3e-46c5-913f-f2d2f965ed0e (hv_netvsc).
    public static let network = GUID(0xf861_5163, 0xdf3e, 0x46c5, 0x913f_f2d2_f965_ed0e)
}
