import HyperV

/// A complete IC packet payload: pipe header (8 bytes), `icmsg_hdr` (20 bytes at +8) and the
/// service body at +28 (ICMSG_HDR; Docs/hyperv-interface.md §10.1).
///
/// The host sends requests as in-band packets with trans_id 0 and no completion requested; the
/// guest answers in place — same buffer and length, icflags TRANSACTION|RESPONSE, status filled
/// in — as an in-band packet with flags 0.
public struct ICMessage: Hashable, Sendable {
    /// Offset of the IC header in the payload.
    public static let headerOffset = PipeHeader.size
    /// Offset of the body in the payload (ICMSG_HDR).
    public static let bodyOffset = PipeHeader.size + ICMessageHeader.size

    /// The pipe header, echoed unchanged in responses.
    public var pipeHeader: PipeHeader
    /// The IC header.
    public var header: ICMessageHeader
    /// The service body: every byte after offset 28 (ring padding included when parsed from a packet).
    public var body: [UInt8]

    /// Creates a message from its parts.
    public init(pipeHeader: PipeHeader, header: ICMessageHeader, body: [UInt8]) {
        self.pipeHeader = pipeHeader
        self.header = header
        self.body = body
    }

    /// A host request: icflags TRANSACTION|REQUEST, status 0, icmsgsize and the pipe header's
    /// msgsize derived from the body.
    public static func request(
        type: ICMessageType, frameworkVersion: ICVersion, messageVersion: ICVersion, transactionID: UInt8 = 0,
        body: [UInt8]
    ) -> ICMessage {
        ICMessage(
            pipeHeader: PipeHeader(messageSize: UInt32(clamping: ICMessageHeader.size + body.count)),
            header: ICMessageHeader(
                frameworkVersion: frameworkVersion, messageType: type, messageVersion: messageVersion,
                messageSize: UInt16(clamping: body.count), transactionID: transactionID,
                flags: [.transaction, .request]),
            body: body)
    }

    /// Parses a packet payload.
    /// - Throws: `ICError.truncated` if it is shorter than 28 bytes, `.invalidPipeHeader` if the
    ///   pipe flags are not PIPE_PACKET_TYPE_DATA.
    public init(parsing payload: [UInt8]) throws(ICError) {
        let pipeHeader = try PipeHeader(parsing: payload)
        guard pipeHeader.flags == PipeHeader.dataFlags else { throw .invalidPipeHeader(flags: pipeHeader.flags) }
        let header = try ICMessageHeader(parsing: payload, at: ICMessage.headerOffset)
        self.init(pipeHeader: pipeHeader, header: header, body: Array(payload[ICMessage.bodyOffset...]))
    }

    /// The serialized payload: 28 header bytes followed by the body.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(ICMessage.bodyOffset)
        pipeHeader.store(into: &bytes, at: 0)
        header.store(into: &bytes, at: ICMessage.headerOffset)
        bytes.append(contentsOf: body)
        return bytes
    }

    /// The guest's answer built from this request: same pipe header, transaction ID and length,
    /// icflags TRANSACTION|RESPONSE, `status` filled in, and the start of the body overwritten
    /// with `replacement` (the rest of the body is kept).
    /// - Throws: `ICError.bodyTooLarge` if `replacement` is longer than the request's body.
    public func response(status: ICStatus, replacingBodyWith replacement: [UInt8] = []) throws(ICError) -> ICMessage {
        guard replacement.count <= body.count else {
            throw .bodyTooLarge(size: replacement.count, capacity: body.count)
        }
        var response = self
        response.header.flags = [.transaction, .response]
        response.header.status = status
        for index in 0..<replacement.count { response.body[index] = replacement[index] }
        return response
    }

    /// Turns a received request payload into the guest's answer in place: icflags
    /// TRANSACTION|RESPONSE and `status`; the caller rewrites the body as the service requires.
    /// - Throws: `ICError.truncated` if the payload is shorter than 28 bytes.
    public static func makeResponse(inPlace payload: inout [UInt8], status: ICStatus) throws(ICError) {
        guard payload.count >= bodyOffset else { throw .truncated(needed: bodyOffset, available: payload.count) }
        payload.storeLittleEndian(status.rawValue, at: headerOffset + ICMessageHeader.statusOffset)
        payload.storeLittleEndian(
            ICFlags([.transaction, .response]).rawValue, at: headerOffset + ICMessageHeader.flagsOffset)
    }
}
