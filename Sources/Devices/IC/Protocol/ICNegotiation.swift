import HyperV

/// The result of an IC version negotiation.
public enum ICNegotiationOutcome: Hashable, Sendable {
    /// Both sides share these versions (response counts 1/1).
    case agreed(framework: ICVersion, message: ICVersion)
    /// The guest found no common version (response counts 0/0).
    case noCommonVersion
}

/// Both sides of IC version negotiation (Docs/hyperv-interface.md §10.3).
public enum ICNegotiation {
    /// A host NEGOTIATE request offering `frameworkVersions` and `messageVersions`. The header's
    /// version fields carry the first (preferred) entry of each list.
    public static func request(
        frameworkVersions: [ICVersion] = ICService.frameworkVersions, messageVersions: [ICVersion],
        transactionID: UInt8 = 0
    ) -> ICMessage {
        let body = ICNegotiateBody(frameworkVersions: frameworkVersions, messageVersions: messageVersions)
        return ICMessage.request(
            type: .negotiate, frameworkVersion: frameworkVersions.first ?? ICVersion(1, 0),
            messageVersion: messageVersions.first ?? ICVersion(1, 0), transactionID: transactionID,
            body: body.bytes)
    }

    /// Reads the guest's NEGOTIATE response (host side).
    /// - Throws: `ICError.unexpectedMessageType`, `.notAResponse`, `.truncated`, or
    ///   `.invalidVersionCounts` if the counts are neither 1/1 nor 0/0.
    public static func outcome(of response: ICMessage) throws(ICError) -> ICNegotiationOutcome {
        guard response.header.messageType == .negotiate else {
            throw .unexpectedMessageType(expected: .negotiate, found: response.header.messageType)
        }
        guard response.header.flags.contains(.response) else { throw .notAResponse(response.header.flags) }
        let body = try ICNegotiateBody(parsing: response.body)
        switch (body.frameworkVersions.count, body.messageVersions.count) {
        case (1, 1): return .agreed(framework: body.frameworkVersions[0], message: body.messageVersions[0])
        case (0, 0): return .noCommonVersion
        default:
            throw .invalidVersionCounts(
                framework: UInt16(truncatingIfNeeded: body.frameworkVersions.count),
                message: UInt16(truncatingIfNeeded: body.messageVersions.count))
        }
    }

    /// The first of `preferences` that appears in `offered`, or `nil`: the guest's own order
    /// wins, not the host's.
    public static func select(from offered: [ICVersion], preferring preferences: [ICVersion]) -> ICVersion? {
        for preferred in preferences where offered.contains(preferred) { return preferred }
        return nil
    }

    /// The guest side: turns a received NEGOTIATE payload into the answer in place, keeping its
    /// length. On a match the counts become 1/1 with the framework version in slot 0 and the
    /// message version in slot 1, status HV_S_OK; otherwise the counts become 0/0 with status
    /// HV_E_FAIL. icmsgsize becomes 0x10 and icflags TRANSACTION|RESPONSE either way.
    /// - Parameters:
    ///   - payload: the packet payload (pipe header onwards).
    ///   - messageVersions: the service's message versions, most preferred first (`ICService`).
    ///   - frameworkVersions: the framework versions, most preferred first.
    /// - Throws: `ICError` if the payload is not a well-formed NEGOTIATE request.
    public static func respond(
        inPlace payload: inout [UInt8], messageVersions: [ICVersion],
        frameworkVersions: [ICVersion] = ICService.frameworkVersions
    ) throws(ICError) -> ICNegotiationOutcome {
        let request = try ICMessage(parsing: payload)
        guard request.header.messageType == .negotiate else {
            throw .unexpectedMessageType(expected: .negotiate, found: request.header.messageType)
        }
        let offered = try ICNegotiateBody(parsing: request.body)
        let framework = select(from: offered.frameworkVersions, preferring: frameworkVersions)
        let message = select(from: offered.messageVersions, preferring: messageVersions)
        let base = ICMessage.bodyOffset
        let outcome: ICNegotiationOutcome
        if let framework, let message {
            // At least one version of each kind was offered, so both slots lie inside the payload.
            outcome = .agreed(framework: framework, message: message)
            payload.storeLittleEndian(UInt16(1), at: base)
            payload.storeLittleEndian(UInt16(1), at: base + 2)
            framework.store(into: &payload, at: base + ICNegotiateBody.versionsOffset)
            message.store(into: &payload, at: base + ICNegotiateBody.versionsOffset + ICVersion.size)
        } else {
            outcome = .noCommonVersion
            payload.storeLittleEndian(UInt16(0), at: base)
            payload.storeLittleEndian(UInt16(0), at: base + 2)
        }
        payload.storeLittleEndian(
            ICNegotiateBody.responseMessageSize, at: ICMessage.headerOffset + ICMessageHeader.messageSizeOffset)
        try ICMessage.makeResponse(inPlace: &payload, status: outcome == .noCommonVersion ? .failure : .success)
        return outcome
    }
}
