/// Any VMBus channel message, decoded by its msgtype (Docs/hyperv-interface.md §6.2).
///
/// Types this module has no layout for (reserved channels, hv_sock, pause/resume, and any
/// out-of-range value) decode as `.unknown` so the caller can log and drop them, as Linux does
/// for msgtype ≥ 25.
public enum ChannelMessage: Hashable, Sendable {
    /// OFFERCHANNEL (1), host → guest.
    case offerChannel(OfferChannel)
    /// RESCIND_CHANNELOFFER (2), host → guest.
    case rescindOffer(RescindOffer)
    /// REQUESTOFFERS (3), guest → host.
    case requestOffers(RequestOffers)
    /// ALLOFFERS_DELIVERED (4), host → guest.
    case allOffersDelivered(AllOffersDelivered)
    /// OPENCHANNEL (5), guest → host.
    case openChannel(OpenChannel)
    /// OPENCHANNEL_RESULT (6), host → guest.
    case openResult(OpenResult)
    /// CLOSECHANNEL (7), guest → host.
    case closeChannel(CloseChannel)
    /// GPADL_HEADER (8), guest → host.
    case gpadlHeader(GPADLHeader)
    /// GPADL_BODY (9), guest → host.
    case gpadlBody(GPADLBody)
    /// GPADL_CREATED (10), host → guest.
    case gpadlCreated(GPADLCreated)
    /// GPADL_TEARDOWN (11), guest → host.
    case gpadlTeardown(GPADLTeardown)
    /// GPADL_TORNDOWN (12), host → guest.
    case gpadlTorndown(GPADLTorndown)
    /// RELID_RELEASED (13), guest → host.
    case relIDReleased(RelIDReleased)
    /// INITIATE_CONTACT (14), guest → host.
    case initiateContact(InitiateContact)
    /// VERSION_RESPONSE (15), host → guest.
    case versionResponse(VersionResponse)
    /// UNLOAD (16), guest → host.
    case unload(Unload)
    /// UNLOAD_RESPONSE (17), host → guest.
    case unloadResponse(UnloadResponse)
    /// MODIFYCHANNEL (22), guest → host.
    case modifyChannel(ModifyChannel)
    /// MODIFYCHANNEL_RESPONSE (24), host → guest.
    case modifyChannelResponse(ModifyChannelResponse)
    /// A message type without a layout here, kept verbatim (header included).
    case unknown(type: UInt32, payload: [UInt8])

    /// Decodes a SynIC message payload (header included) by its msgtype.
    /// - Throws: `VMBusError` if the payload is shorter than a header, longer than 240 bytes, or
    ///   too short for its type.
    public init(parsing payload: [UInt8]) throws(VMBusError) {
        guard payload.count <= VMBusConstants.maximumMessagePayload else {
            throw .oversized(size: payload.count)
        }
        guard payload.count >= ChannelMessageHeader.size, let type = ChannelMessageHeader.messageType(of: payload)
        else {
            throw .truncated(
                ChannelMessageHeader.messageType(of: payload) ?? ChannelMessageType(rawValue: 0),
                size: payload.count, minimum: ChannelMessageHeader.size)
        }
        switch type {
        case .offerChannel: self = .offerChannel(try OfferChannel(parsing: payload))
        case .rescindChannelOffer: self = .rescindOffer(try RescindOffer(parsing: payload))
        case .requestOffers: self = .requestOffers(try RequestOffers(parsing: payload))
        case .allOffersDelivered: self = .allOffersDelivered(try AllOffersDelivered(parsing: payload))
        case .openChannel: self = .openChannel(try OpenChannel(parsing: payload))
        case .openChannelResult: self = .openResult(try OpenResult(parsing: payload))
        case .closeChannel: self = .closeChannel(try CloseChannel(parsing: payload))
        case .gpadlHeader: self = .gpadlHeader(try GPADLHeader(parsing: payload))
        case .gpadlBody: self = .gpadlBody(try GPADLBody(parsing: payload))
        case .gpadlCreated: self = .gpadlCreated(try GPADLCreated(parsing: payload))
        case .gpadlTeardown: self = .gpadlTeardown(try GPADLTeardown(parsing: payload))
        case .gpadlTorndown: self = .gpadlTorndown(try GPADLTorndown(parsing: payload))
        case .relIDReleased: self = .relIDReleased(try RelIDReleased(parsing: payload))
        case .initiateContact: self = .initiateContact(try InitiateContact(parsing: payload))
        case .versionResponse: self = .versionResponse(try VersionResponse(parsing: payload))
        case .unload: self = .unload(try Unload(parsing: payload))
        case .unloadResponse: self = .unloadResponse(try UnloadResponse(parsing: payload))
        case .modifyChannel: self = .modifyChannel(try ModifyChannel(parsing: payload))
        case .modifyChannelResponse: self = .modifyChannelResponse(try ModifyChannelResponse(parsing: payload))
        default: self = .unknown(type: type.rawValue, payload: payload)
        }
    }

    /// The msgtype of this message.
    public var type: ChannelMessageType {
        switch self {
        case .offerChannel: OfferChannel.messageType
        case .rescindOffer: RescindOffer.messageType
        case .requestOffers: RequestOffers.messageType
        case .allOffersDelivered: AllOffersDelivered.messageType
        case .openChannel: OpenChannel.messageType
        case .openResult: OpenResult.messageType
        case .closeChannel: CloseChannel.messageType
        case .gpadlHeader: GPADLHeader.messageType
        case .gpadlBody: GPADLBody.messageType
        case .gpadlCreated: GPADLCreated.messageType
        case .gpadlTeardown: GPADLTeardown.messageType
        case .gpadlTorndown: GPADLTorndown.messageType
        case .relIDReleased: RelIDReleased.messageType
        case .initiateContact: InitiateContact.messageType
        case .versionResponse: VersionResponse.messageType
        case .unload: Unload.messageType
        case .unloadResponse: UnloadResponse.messageType
        case .modifyChannel: ModifyChannel.messageType
        case .modifyChannelResponse: ModifyChannelResponse.messageType
        case .unknown(let type, _): ChannelMessageType(rawValue: type)
        }
    }

    /// The serialized payload, header included; `.unknown` returns its bytes unchanged.
    public var bytes: [UInt8] {
        switch self {
        case .offerChannel(let message): message.bytes
        case .rescindOffer(let message): message.bytes
        case .requestOffers(let message): message.bytes
        case .allOffersDelivered(let message): message.bytes
        case .openChannel(let message): message.bytes
        case .openResult(let message): message.bytes
        case .closeChannel(let message): message.bytes
        case .gpadlHeader(let message): message.bytes
        case .gpadlBody(let message): message.bytes
        case .gpadlCreated(let message): message.bytes
        case .gpadlTeardown(let message): message.bytes
        case .gpadlTorndown(let message): message.bytes
        case .relIDReleased(let message): message.bytes
        case .initiateContact(let message): message.bytes
        case .versionResponse(let message): message.bytes
        case .unload(let message): message.bytes
        case .unloadResponse(let message): message.bytes
        case .modifyChannel(let message): message.bytes
        case .modifyChannelResponse(let message): message.bytes
        case .unknown(_, let payload): payload
        }
    }
}
