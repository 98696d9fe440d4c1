import HyperV

/// The action a shutdown request asks for (Docs/hyperv-interface.md §10.5).
public enum ShutdownAction: Hashable, Sendable {
    /// flags 0 or 1: orderly power-off.
    case powerOff
    /// flags 2 or 3: orderly reboot.
    case reboot
    /// flags 4 or 5: hibernate; needs ACPI S4, otherwise the guest answers HV_E_FAIL.
    case hibernate
}

/// The flags word of a shutdown request. Linux acts on the value with bit 0 cleared
/// (0/1, 2/3 and 4/5 behave alike).
public struct ShutdownFlags: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// 0: power off.
    public static let powerOff = ShutdownFlags(rawValue: 0)
    /// 2: reboot.
    public static let reboot = ShutdownFlags(rawValue: 2)
    /// 4: hibernate.
    public static let hibernate = ShutdownFlags(rawValue: 4)

    /// The requested action, or `nil` for values Linux does not act on.
    public var action: ShutdownAction? {
        switch rawValue {
        case 0, 1: .powerOff
        case 2, 3: .reboot
        case 4, 5: .hibernate
        default: nil
        }
    }
}

/// The shutdown body (`shutdown_msg_data`; Docs/hyperv-interface.md §10.5): u32 reason_code @0,
/// u32 timeout_seconds @4, u32 flags @8, u8 display_message[2048] @12; 2060 bytes.
///
/// The guest ignores requests whose body is shorter, so the host always sends all 2060 bytes.
public struct ShutdownBody: Hashable, Sendable {
    /// Size of the body; also the minimum the guest accepts.
    public static let size = 2060
    /// Size of the display message field.
    public static let displayMessageSize = 2048

    /// reason_code.
    public var reasonCode: UInt32
    /// timeout_seconds.
    public var timeoutSeconds: UInt32
    /// What to do.
    public var flags: ShutdownFlags
    /// display_message; serialization copies at most 2048 bytes and zero-fills the rest.
    public var displayMessage: [UInt8]

    /// Creates a body.
    public init(reasonCode: UInt32 = 0, timeoutSeconds: UInt32 = 0, flags: ShutdownFlags, displayMessage: [UInt8] = [])
    {
        self.reasonCode = reasonCode
        self.timeoutSeconds = timeoutSeconds
        self.flags = flags
        self.displayMessage = displayMessage
    }

    /// Parses a shutdown body.
    /// - Throws: `ICError.truncated` if it is shorter than 2060 bytes.
    public init(parsing body: [UInt8]) throws(ICError) {
        guard body.count >= ShutdownBody.size,
            let reasonCode = body.littleEndian(UInt32.self, at: 0),
            let timeoutSeconds = body.littleEndian(UInt32.self, at: 4),
            let flags = body.littleEndian(UInt32.self, at: 8)
        else { throw .truncated(needed: ShutdownBody.size, available: body.count) }
        self.init(
            reasonCode: reasonCode, timeoutSeconds: timeoutSeconds, flags: ShutdownFlags(rawValue: flags),
            displayMessage: Array(body[12..<ShutdownBody.size]))
    }

    /// The full 2060-byte body.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(ShutdownBody.size)
        bytes.storeLittleEndian(reasonCode, at: 0)
        bytes.storeLittleEndian(timeoutSeconds, at: 4)
        bytes.storeLittleEndian(flags.rawValue, at: 8)
        for index in 0..<min(displayMessage.count, ShutdownBody.displayMessageSize) {
            bytes[12 + index] = displayMessage[index]
        }
        return bytes
    }
}
