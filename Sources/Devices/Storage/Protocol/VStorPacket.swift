import HyperV

/// The 64-byte `vstor_packet` every storage VSC/VSP message carries as its VMBus payload
/// (drivers/scsi/storvsc_drv.c): operation u32 @0, flags u32 @4, NTSTATUS u32 @8, then a
/// 52-byte union @12 holding a `vmscsi_request`, the channel properties, a protocol version or
/// a sub-channel count.
public struct VStorPacket: Hashable, Sendable {
    /// Size on the wire. Linux drops a completion whose payload is shorter
    /// (`storvsc_on_channel_callback`), so every answer carries all 64 bytes.
    public static let size = 64
    /// Offset of the union.
    public static let bodyOffset = 12
    /// Size of the union.
    public static let bodySize = 52

    /// What the packet asks for, or `.completeIO` in answers.
    public var operation: StorageOperation
    /// REQUEST_COMPLETION_FLAG in requests.
    public var flags: VStorPacketFlags
    /// The answer's status (0 in requests).
    public var status: StorageStatus
    /// The union, always 52 bytes (zero past what the sender sent), stored inline: a packet
    /// is parsed and built once per request.
    public private(set) var body: FixedBytes<52>
    /// How many union bytes the sender actually sent (0...52); layouts longer than this are
    /// refused by their parsers.
    public var bodyLength: Int

    /// A packet with a zeroed union.
    public init(operation: StorageOperation, flags: VStorPacketFlags = [], status: StorageStatus = .success) {
        self.operation = operation
        self.flags = flags
        self.status = status
        body = FixedBytes()
        bodyLength = VStorPacket.bodySize
    }

    /// Parses `bytes[start..<end]` (a packet payload; bytes past 64 are padding and ignored).
    /// The 12-byte header must be present; a shorter union is kept with its length.
    /// - Throws: `.truncated` if fewer than 12 bytes are there or the bounds are outside `bytes`.
    public init(parsing bytes: [UInt8], from start: Int, to end: Int) throws(StorageProtocolError) {
        guard start >= 0, start <= end, end <= bytes.count else {
            throw .truncated(needed: VStorPacket.bodyOffset, available: 0)
        }
        guard end - start >= VStorPacket.bodyOffset,
            let operation = bytes.littleEndian(UInt32.self, at: start),
            let flags = bytes.littleEndian(UInt32.self, at: start + 4),
            let status = bytes.littleEndian(UInt32.self, at: start + 8)
        else { throw .truncated(needed: VStorPacket.bodyOffset, available: end - start) }
        self.operation = StorageOperation(rawValue: operation)
        self.flags = VStorPacketFlags(rawValue: flags)
        self.status = StorageStatus(rawValue: status)
        let length = min(end - start - VStorPacket.bodyOffset, VStorPacket.bodySize)
        body = FixedBytes(copying: bytes, from: start + VStorPacket.bodyOffset, count: length)
        bodyLength = length
    }

    /// Parses a whole payload.
    public init(parsing bytes: [UInt8]) throws(StorageProtocolError) {
        try self.init(parsing: bytes, from: 0, to: bytes.count)
    }

    /// The operation @0 of a payload that may be too short for a whole header (at least 4
    /// bytes), so that even a truncated request can be answered.
    public static func operation(of bytes: [UInt8], from start: Int, to end: Int) -> StorageOperation? {
        guard start >= 0, start <= end, end <= bytes.count, end - start >= 4,
            let raw = bytes.littleEndian(UInt32.self, at: start)
        else { return nil }
        return StorageOperation(rawValue: raw)
    }

    /// The 64 bytes on the wire.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(VStorPacket.size)
        store(into: &bytes, at: 0)
        return bytes
    }

    /// Stores the packet at `offset` of a buffer with room for 64 bytes.
    public func store(into buffer: inout [UInt8], at offset: Int) {
        precondition(offset >= 0 && offset <= buffer.count - VStorPacket.size, "a vstor_packet outside a host-built buffer")
        buffer.storeLittleEndian(operation.rawValue, at: offset)
        buffer.storeLittleEndian(flags.rawValue, at: offset + 4)
        buffer.storeLittleEndian(status.rawValue, at: offset + 8)
        var out = buffer.mutableSpan
        body.store(into: &out, at: offset + VStorPacket.bodyOffset)
    }

    // MARK: Union fields, addressed by their offset in the whole packet ("vstor@N").

    /// Reads a little-endian union field at packet offset `offset`, if the sender sent it.
    public func field<T: FixedWidthInteger & BitwiseCopyable>(_: T.Type, at offset: Int) -> T? {
        let bodyOffset = offset - VStorPacket.bodyOffset
        guard bodyOffset >= 0, bodyOffset + T.bitWidth / 8 <= bodyLength else { return nil }
        return body.littleEndian(T.self, at: bodyOffset)
    }

    /// Writes a little-endian union field at packet offset `offset` (12...63).
    public mutating func setField<T: FixedWidthInteger & BitwiseCopyable>(_ value: T, at offset: Int) {
        body.storeLittleEndian(value, at: offset - VStorPacket.bodyOffset)
    }

    /// Reads `count` union bytes from packet offset `offset`, if the sender sent them.
    public func bytes(at offset: Int, count: Int) -> [UInt8]? {
        let bodyOffset = offset - VStorPacket.bodyOffset
        guard bodyOffset >= 0, count >= 0, bodyOffset + count <= bodyLength else { return nil }
        var bytes = [UInt8](repeating: 0, count: count)
        for index in 0..<count { bytes[index] = body[bodyOffset + index] }
        return bytes
    }

    /// Writes `bytes` into the union from packet offset `offset`, which must leave room for them.
    public mutating func setBytes<let count: Int>(_ bytes: FixedBytes<count>, at offset: Int) {
        body.store(bytes, at: offset - VStorPacket.bodyOffset)
    }

    /// Writes one union byte at packet offset `offset` (12...63).
    public mutating func setByte(_ value: UInt8, at offset: Int) {
        body[offset - VStorPacket.bodyOffset] = value
    }
}
