import HyperV

/// A framework or message version in an IC header or NEGOTIATE body: u16 major, u16 minor
/// (Docs/hyperv-interface.md §10.2, §10.3).
public struct ICVersion: Hashable, Comparable, Sendable {
    /// Major version.
    public var major: UInt16
    /// Minor version.
    public var minor: UInt16

    /// The version `major.minor`.
    public init(_ major: UInt16, _ minor: UInt16) {
        self.major = major
        self.minor = minor
    }

    public static func < (a: ICVersion, b: ICVersion) -> Bool {
        (a.major, a.minor) < (b.major, b.minor)
    }

    /// Size on the wire.
    public static let size = 4

    /// Reads a version at `offset`, or `nil` if four bytes are not available.
    public init?(bytes: [UInt8], at offset: Int) {
        guard let major = bytes.littleEndian(UInt16.self, at: offset),
            let minor = bytes.littleEndian(UInt16.self, at: offset &+ 2)
        else { return nil }
        self.init(major, minor)
    }

    /// Stores the version at `offset` of a buffer with room for it.
    public func store(into buffer: inout [UInt8], at offset: Int) {
        buffer.storeLittleEndian(major, at: offset)
        buffer.storeLittleEndian(minor, at: offset + 2)
    }
}
