import HyperV

/// The heartbeat body (`heartbeat_msg_data`; Docs/hyperv-interface.md §10.4): u64 seq_num @0,
/// u32 reserved[8] @8; 40 bytes. The guest answers with seq_num + 1.
public struct HeartbeatBody: Hashable, Sendable {
    /// Size of the full body as the host sends it.
    public static let size = 40
    /// The guest needs only the sequence number (recvlen ≥ 28 + 8).
    public static let minimumSize = 8

    /// The sequence number.
    public var sequenceNumber: UInt64

    /// Creates a body.
    public init(sequenceNumber: UInt64) { self.sequenceNumber = sequenceNumber }

    /// Parses a heartbeat body.
    /// - Throws: `ICError.truncated` if it is shorter than 8 bytes.
    public init(parsing body: [UInt8]) throws(ICError) {
        guard let sequenceNumber = body.littleEndian(UInt64.self, at: 0) else {
            throw .truncated(needed: HeartbeatBody.minimumSize, available: body.count)
        }
        self.sequenceNumber = sequenceNumber
    }

    /// The 40-byte body, reserved words zero.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(HeartbeatBody.size)
        bytes.storeLittleEndian(sequenceNumber, at: 0)
        return bytes
    }

    /// The body the guest returns: the sequence number plus one (wrapping).
    public var response: HeartbeatBody { HeartbeatBody(sequenceNumber: sequenceNumber &+ 1) }

    /// The guest side: answers a received heartbeat payload in place (seq_num + 1, HV_S_OK).
    /// - Returns: the request's body.
    /// - Throws: `ICError` if the payload is not a heartbeat request with a sequence number.
    public static func respond(inPlace payload: inout [UInt8]) throws(ICError) -> HeartbeatBody {
        let request = try ICMessage(parsing: payload)
        guard request.header.messageType == .heartbeat else {
            throw .unexpectedMessageType(expected: .heartbeat, found: request.header.messageType)
        }
        let body = try HeartbeatBody(parsing: request.body)
        payload.storeLittleEndian(body.response.sequenceNumber, at: ICMessage.bodyOffset)
        try ICMessage.makeResponse(inPlace: &payload, status: .success)
        return body
    }
}
