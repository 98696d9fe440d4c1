import HyperV

/// Appends fields to a control message, little-endian.
public struct WireEncoder {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func u8(_ value: UInt8) { bytes.append(value) }
    public mutating func u16(_ value: UInt16) { bytes.appendLittleEndian(value) }
    public mutating func u32(_ value: UInt32) { bytes.appendLittleEndian(value) }
    public mutating func u64(_ value: UInt64) { bytes.appendLittleEndian(value) }
    public mutating func i64(_ value: Int64) { bytes.appendLittleEndian(value) }
    public mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    /// A length-prefixed (u32) byte string.
    public mutating func data(_ value: [UInt8]) {
        u32(UInt32(value.count))
        bytes += value
    }

    /// A length-prefixed UTF-8 string.
    public mutating func string(_ value: String) { data(Array(value.utf8)) }

    /// An optional u64: presence byte then value.
    public mutating func optionalU64(_ value: UInt64?) {
        bool(value != nil)
        if let value { u64(value) }
    }
}

/// Reads fields from a received control message; every read is bounds-checked.
public struct WireDecoder {
    private let bytes: [UInt8]
    private var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Whether every byte was consumed.
    public var isAtEnd: Bool { offset == bytes.count }

    private mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(ControlProtocolError) -> T {
        guard let value = bytes.littleEndian(T.self, at: offset) else { throw .truncated }
        offset += T.bitWidth / 8
        return value
    }

    public mutating func u8() throws(ControlProtocolError) -> UInt8 { try integer(UInt8.self) }
    public mutating func u16() throws(ControlProtocolError) -> UInt16 { try integer(UInt16.self) }
    public mutating func u32() throws(ControlProtocolError) -> UInt32 { try integer(UInt32.self) }
    public mutating func u64() throws(ControlProtocolError) -> UInt64 { try integer(UInt64.self) }
    public mutating func i64() throws(ControlProtocolError) -> Int64 { try integer(Int64.self) }
    public mutating func bool() throws(ControlProtocolError) -> Bool { try u8() != 0 }

    public mutating func data(limit: Int = 1 << 16) throws(ControlProtocolError) -> [UInt8] {
        let count = Int(try u32())
        guard count <= limit, count <= bytes.count - offset else { throw .truncated }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    public mutating func string(limit: Int = 4096) throws(ControlProtocolError) -> String {
        String(decoding: try data(limit: limit), as: UTF8.self)
    }

    public mutating func optionalU64() throws(ControlProtocolError) -> UInt64? {
        try bool() ? try u64() : nil
    }
}

/// A control message that cannot be decoded; the receiver drops the connection.
public enum ControlProtocolError: Error, Equatable, CustomStringConvertible {
    case truncated
    case trailingBytes
    case unknownKind(UInt16)
    case unsupportedVersion(UInt16)
    case missingDescriptor(String)

    public var description: String {
        switch self {
        case .truncated: "control message is truncated"
        case .trailingBytes: "control message has trailing bytes"
        case .unknownKind(let kind): "unknown control message kind \(kind)"
        case .unsupportedVersion(let version): "unsupported control protocol version \(version)"
        case .missingDescriptor(let what): "control message lacks its \(what) descriptor"
        }
    }
}
