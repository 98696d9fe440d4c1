import HyperV

/// The 8-byte header that starts every channel message: msgtype u32 @0, padding u32 @4
/// (Docs/hyperv-interface.md §6.1; openvmm `vm/devices/vmbus/vmbus_core/src/protocol.rs:
/// MessageHeader`).
public enum ChannelMessageHeader {
    /// Header size; fields of every message start at offset 8.
    public static let size = 8

    /// The msgtype of `payload`, or `nil` if it is shorter than the msgtype word.
    public static func messageType(of payload: [UInt8]) -> ChannelMessageType? {
        payload.littleEndian(UInt32.self, at: 0).map { ChannelMessageType(rawValue: $0) }
    }
}
