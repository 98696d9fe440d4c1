/// A data object decoded from AML: what a `Name` holds or a constant method returns.
public indirect enum AMLValue: Equatable, Sendable {
    case integer(UInt64)
    case string(String)
    case buffer([UInt8])
    /// A Package's initialised elements, in order.
    case package([AMLValue])
    /// A name inside a Package, as written (e.g. `\_SB_.PCI0`).
    case reference(String)

    /// The integer, if this is one.
    public var integer: UInt64? {
        if case .integer(let value) = self { value } else { nil }
    }

    /// The string, if this is one.
    public var string: String? {
        if case .string(let value) = self { value } else { nil }
    }

    /// The bytes, if this is a buffer.
    public var buffer: [UInt8]? {
        if case .buffer(let value) = self { value } else { nil }
    }

    /// The elements, if this is a package.
    public var package: [AMLValue]? {
        if case .package(let value) = self { value } else { nil }
    }

    /// A _HID/_CID-style identifier: the string itself, or the "AAA####" spelling of an EISA ID.
    public var hardwareID: String? {
        switch self {
        case .string(let value): value
        case .integer(let value) where value <= UInt64(UInt32.max): EISAID.decode(UInt32(value))
        default: nil
        }
    }
}
