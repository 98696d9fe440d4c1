import HyperV

/// A Generic Address Structure, the 12-byte register locator of FADT fields (ACPI 6.4 §5.2.3.2).
public struct GenericAddress: Equatable, Sendable {
    /// Address space ID 1: system I/O ports.
    public static let systemIOSpace: UInt8 = 1
    /// Access size 1: byte access.
    public static let byteAccess: UInt8 = 1
    /// Encoded size.
    public static let size = 12

    /// Address space ID (0 memory, 1 system I/O, ...).
    public var addressSpace: UInt8
    /// Register width in bits.
    public var bitWidth: UInt8
    /// The register's first bit at `address`.
    public var bitOffset: UInt8
    /// Access size (1 byte, 2 word, 3 dword, 4 qword).
    public var accessSize: UInt8
    /// Port number or physical address.
    public var address: UInt64

    public init(addressSpace: UInt8, bitWidth: UInt8, bitOffset: UInt8, accessSize: UInt8, address: UInt64) {
        self.addressSpace = addressSpace
        self.bitWidth = bitWidth
        self.bitOffset = bitOffset
        self.accessSize = accessSize
        self.address = address
    }

    /// An 8-bit register at I/O `port`, accessed bytewise.
    public static func ioPort8(_ port: UInt16) -> GenericAddress {
        GenericAddress(addressSpace: systemIOSpace, bitWidth: 8, bitOffset: 0, accessSize: byteAccess,
                       address: UInt64(port))
    }

    /// The 12 bytes as a table stores them.
    public var encoded: [UInt8] {
        var bytes = [addressSpace, bitWidth, bitOffset, accessSize]
        bytes.appendLittleEndian(address)
        return bytes
    }

    /// Reads a structure at `offset`, or `nil` if it does not fit.
    public init?(_ bytes: [UInt8], at offset: Int) {
        guard offset >= 0, let address = bytes.littleEndian(UInt64.self, at: offset + 4) else { return nil }
        self.init(addressSpace: bytes[offset], bitWidth: bytes[offset + 1], bitOffset: bytes[offset + 2],
                  accessSize: bytes[offset + 3], address: address)
    }
}
