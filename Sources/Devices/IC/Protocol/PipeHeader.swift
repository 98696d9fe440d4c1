import HyperV

/// The 8-byte pipe header at the start of every IC packet payload: u32 flags, u32 msgsize
/// (Docs/hyperv-interface.md §10.1). Linux skips it and echoes it back unchanged.
public struct PipeHeader: Hashable, Sendable {
    /// Size on the wire.
    public static let size = 8
    /// PIPE_PACKET_TYPE_DATA, the only flags value IC packets use.
    public static let dataFlags: UInt32 = 1

    /// Packet type flags; always `dataFlags`.
    public var flags: UInt32
    /// Bytes following the pipe header (IC header plus body).
    public var messageSize: UInt32

    /// Creates a pipe header.
    public init(flags: UInt32 = PipeHeader.dataFlags, messageSize: UInt32) {
        self.flags = flags
        self.messageSize = messageSize
    }

    /// Reads the pipe header at the start of `bytes`.
    /// - Throws: `ICError.truncated` if fewer than 8 bytes are present.
    public init(parsing bytes: [UInt8]) throws(ICError) {
        guard let flags = bytes.littleEndian(UInt32.self, at: 0),
            let messageSize = bytes.littleEndian(UInt32.self, at: 4)
        else { throw .truncated(needed: PipeHeader.size, available: bytes.count) }
        self.init(flags: flags, messageSize: messageSize)
    }

    /// Stores the header at `offset` of a buffer with room for it.
    public func store(into buffer: inout [UInt8], at offset: Int) {
        buffer.storeLittleEndian(flags, at: offset)
        buffer.storeLittleEndian(messageSize, at: offset + 4)
    }
}
