/// Hypercall codes (TLFS "Hypercall Reference"; Docs/hyperv-interface.md §3).
public struct HypercallCode: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// HvCallPostMessage (slow): post a message to a connection.
    public static let postMessage = HypercallCode(rawValue: 0x005C)
    /// HvCallSignalEvent (fast): signal an event connection.
    public static let signalEvent = HypercallCode(rawValue: 0x005D)
}

/// Hypercall status values returned in RAX bits 15:0.
public struct HypercallStatus: RawRepresentable, Hashable, Sendable, Error {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let success = HypercallStatus(rawValue: 0x0000)
    public static let invalidHypercallCode = HypercallStatus(rawValue: 0x0002)
    public static let invalidHypercallInput = HypercallStatus(rawValue: 0x0003)
    public static let invalidAlignment = HypercallStatus(rawValue: 0x0004)
    public static let invalidParameter = HypercallStatus(rawValue: 0x0005)
    public static let accessDenied = HypercallStatus(rawValue: 0x0006)
    public static let insufficientMemory = HypercallStatus(rawValue: 0x000B)
    public static let invalidPortID = HypercallStatus(rawValue: 0x0011)
    public static let invalidConnectionID = HypercallStatus(rawValue: 0x0012)
    public static let insufficientBuffers = HypercallStatus(rawValue: 0x0013)
}

/// The hypercall input control word passed in RCX (TLFS "Hypercall Inputs").
public struct HypercallControl: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public init(code: HypercallCode, fast: Bool = false) {
        rawValue = UInt64(code.rawValue) | (fast ? 1 << 16 : 0)
    }

    /// Bits 15:0.
    public var code: HypercallCode { HypercallCode(rawValue: UInt16(truncatingIfNeeded: rawValue)) }
    /// Bit 16: register-based ("fast") calling convention.
    public var isFast: Bool { rawValue & (1 << 16) != 0 }
    /// Bits 26:17: variable header size in 8-byte units.
    public var variableHeaderSize: Int { Int((rawValue >> 17) & 0x3FF) }
    /// Bits 43:32: rep count.
    public var repCount: Int { Int((rawValue >> 32) & 0xFFF) }
    /// Bits 59:48: rep start index.
    public var repStart: Int { Int((rawValue >> 48) & 0xFFF) }
    /// Reserved bits (31:27, 47:44, 63:60) that must be zero.
    public var reservedBits: UInt64 { rawValue & 0xF000_F000_F800_0000 }
}

/// HvPostMessage input block at the input GPA (Docs/hyperv-interface.md §3.3).
public enum PostMessageInput {
    /// connection_id u32 @0, reserved u32 @4, message_type u32 @8, payload_size u32 @12, payload @16.
    public static let connectionIDOffset = 0
    public static let messageTypeOffset = 8
    public static let payloadSizeOffset = 12
    public static let payloadOffset = 16
    /// The whole block: header plus the largest payload.
    public static let size = payloadOffset + SynIC.maximumMessagePayload
}

/// A SynIC message connection or event connection identifier (TLFS "Connection IDs").
public struct ConnectionID: RawRepresentable, Hashable, Sendable, Comparable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ value: UInt32) { self.rawValue = value }
    public static func < (a: ConnectionID, b: ConnectionID) -> Bool { a.rawValue < b.rawValue }
    /// Only the low 24 bits identify a connection.
    public static let mask: UInt32 = 0x00FF_FFFF
}
