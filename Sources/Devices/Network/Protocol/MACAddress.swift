import HyperV

/// A 48-bit IEEE 802 MAC address, stored in the low 48 bits of an integer in wire order (the
/// first byte on the wire is the most significant).
public struct MACAddress: Hashable, Sendable, Comparable {
    /// The address as a 48-bit integer.
    public var rawValue: UInt64

    /// ff:ff:ff:ff:ff:ff.
    public static let broadcast = MACAddress(rawValue: 0xFFFF_FFFF_FFFF)
    /// 00:00:00:00:00:00.
    public static let zero = MACAddress(rawValue: 0)

    public init(rawValue: UInt64) { self.rawValue = rawValue & 0xFFFF_FFFF_FFFF }

    /// From six bytes in wire order.
    public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        rawValue = UInt64(b0) << 40 | UInt64(b1) << 32 | UInt64(b2) << 24 | UInt64(b3) << 16 | UInt64(b4) << 8 | UInt64(b5)
    }

    /// The six bytes at `offset` of `bytes`, or `nil` if they are not all there.
    public init?(bytes: [UInt8], at offset: Int = 0) {
        // Two whole-field loads (the switch reads two addresses of every frame), each checked
        // against the buffer's end; once the first fits, `offset + 4` cannot overflow.
        guard let high = bytes.littleEndian(UInt32.self, at: offset),
              let low = bytes.littleEndian(UInt16.self, at: offset + 4) else { return nil }
        rawValue = UInt64(high.byteSwapped) << 16 | UInt64(low.byteSwapped)
    }

    /// The six bytes in wire order.
    public var bytes: [UInt8] {
        (0..<6).map { UInt8(truncatingIfNeeded: rawValue >> UInt64(40 - 8 * $0)) }
    }

    /// Group (multicast or broadcast) bit: bit 0 of the first byte.
    public var isGroup: Bool { rawValue & (1 << 40) != 0 }
    /// ff:ff:ff:ff:ff:ff.
    public var isBroadcast: Bool { self == .broadcast }
    /// A group address other than broadcast.
    public var isMulticast: Bool { isGroup && !isBroadcast }
    /// Locally administered bit: bit 1 of the first byte.
    public var isLocallyAdministered: Bool { rawValue & (2 << 40) != 0 }

    /// The destination address of an Ethernet frame, or `nil` for a runt.
    public static func destination(of frame: [UInt8]) -> MACAddress? { MACAddress(bytes: frame, at: 0) }
    /// The source address of an Ethernet frame, or `nil` for a runt.
    public static func source(of frame: [UInt8]) -> MACAddress? { MACAddress(bytes: frame, at: 6) }

    /// Twelve hex digits, as Linux formats a MAC for "NetworkAddress" (`%pm`, lower case).
    public var hexDigits: [UInt8] {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var result: [UInt8] = []
        for byte in bytes {
            result.append(digits[Int(byte >> 4)])
            result.append(digits[Int(byte & 0xF)])
        }
        return result
    }

    /// Parses twelve hex digits (either case, no separators).
    public init?(hexDigits: [UInt8]) {
        guard hexDigits.count == 12 else { return nil }
        var value: UInt64 = 0
        for digit in hexDigits {
            let nibble: UInt8
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = digit - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = digit - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt64(nibble)
        }
        self.init(rawValue: value)
    }

    public static func < (lhs: MACAddress, rhs: MACAddress) -> Bool { lhs.rawValue < rhs.rawValue }
}
