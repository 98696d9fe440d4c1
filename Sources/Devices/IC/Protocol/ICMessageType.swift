/// The icmsgtype of an IC message header (Docs/hyperv-interface.md §10.2).
///
/// A struct rather than an enum so that any value a peer sends stays representable.
public struct ICMessageType: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// 0: version negotiation, always the first exchange on a channel.
    public static let negotiate = ICMessageType(rawValue: 0)
    /// 1: heartbeat.
    public static let heartbeat = ICMessageType(rawValue: 1)
    /// 2: key-value pair exchange.
    public static let kvpExchange = ICMessageType(rawValue: 2)
    /// 3: shutdown request.
    public static let shutdown = ICMessageType(rawValue: 3)
    /// 4: time synchronization.
    public static let timeSync = ICMessageType(rawValue: 4)
    /// 5: volume shadow copy (not offered).
    public static let vss = ICMessageType(rawValue: 5)
    /// 7: file copy (not offered).
    public static let fcopy = ICMessageType(rawValue: 7)
}
