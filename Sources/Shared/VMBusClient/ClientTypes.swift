import HyperV
import VMBusProtocol

/// What the client asks its driver to do. Carry the actions of one call out in order.
public enum ClientAction: Hashable, Sendable {
    /// Wait `delay` nanoseconds (0: none), then HvPostMessage `message` (message type 1) on
    /// `connection`, and report the hypercall status with `VMBusClient.postCompleted(_:now:)`.
    /// Only one post is outstanding at a time.
    case post(ChannelMessage, connection: ConnectionID, delay: UInt64)
    /// Something awaits an answer: feed the host's messages as they arrive, and call
    /// `VMBusClient.tick(now:)` once `now` reaches `deadline`. Each call's actions end with this
    /// while anything is awaited; actions that do not end with it mean nothing is.
    case wait(until: UInt64)
    /// Something happened the program may act on.
    case event(ClientEvent)
}

/// What the program learns from the client.
public enum ClientEvent: Hashable, Sendable {
    /// The host accepted `version`; channel messages now go to the negotiated connection.
    case connected(VMBusVersion)
    /// The host refused `version`; the client tries the next one, if any.
    case versionRefused(VMBusVersion)
    /// OFFERCHANNEL: a device channel (also after ALLOFFERS_DELIVERED, for hot-added devices).
    case offer(OfferChannel)
    /// ALLOFFERS_DELIVERED: every device present at REQUESTOFFERS has been offered.
    case allOffersDelivered
    /// GPADL_CREATED for `gpadl` of `channel`; `status` 0 is success, anything else drops it.
    case gpadlCreated(gpadl: UInt32, channel: UInt32, status: UInt32)
    /// OPENCHANNEL_RESULT for `channel`; `status` 0 means it is open.
    case opened(channel: UInt32, status: UInt32)
    /// RESCIND_CHANNELOFFER: the host withdrew `channel`. Stop using its rings, then answer with
    /// `VMBusClient.releaseRelID(_:now:)`.
    case rescinded(channel: UInt32)
    /// GPADL_TORNDOWN: the host no longer touches the pages of `gpadl`.
    case gpadlTornDown(gpadl: UInt32)
    /// UNLOAD_RESPONSE: the connection is closed; `connect` may start a new one.
    case unloaded
    /// A request the program made did not complete.
    case failed(ClientRequest, ClientFailure)
    /// The host sent something the client cannot accept now; it was dropped. For logs.
    case ignored(HostViolation)
}

/// A request of the program, named in failures.
public enum ClientRequest: Hashable, Sendable {
    case connect
    case requestOffers
    case createGPADL(UInt32)
    case openChannel(UInt32)
    case closeChannel(UInt32)
    case teardownGPADL(UInt32)
    case releaseRelID(UInt32)
    case unload
}

/// Why a request did not complete.
public enum ClientFailure: Hashable, Sendable {
    /// The host refused every version the client proposes.
    case noVersionAccepted
    /// HvPostMessage failed with `status`, either at once or after retrying for the whole window.
    case postFailed(HypercallStatus)
    /// The host did not answer in time.
    case timedOut
    /// The host rescinded the channel the request was for.
    case rescinded
}

/// A host message the client dropped, and why. The host is untrusted: none of these traps or
/// changes state beyond the drop.
public enum HostViolation: Hashable, Sendable {
    /// The payload does not parse.
    case malformed(VMBusError)
    /// A message type the host must not send, or one nothing is waiting for.
    case unexpected(ChannelMessageType)
    /// A message about a channel the client does not have in the state the message needs.
    case unknownChannel(ChannelMessageType, relID: UInt32)
    /// A message about a GPADL the client does not have in the state the message needs.
    case unknownGPADL(ChannelMessageType, gpadl: UInt32)
    /// An offer with a relid outside 1...2047.
    case invalidRelID(UInt32)
    /// An offer for a relid that is already offered.
    case duplicateOffer(UInt32)
    /// An offer beyond `Configuration.maximumOffers`.
    case tooManyOffers(UInt32)
    /// OPENCHANNEL_RESULT whose open ID is not the one the client sent.
    case openIDMismatch(relID: UInt32, openID: UInt32)
}

/// Why the client refused a request of the program (nothing was sent).
public enum ClientError: Error, Hashable, Sendable {
    /// The request needs a connected client.
    case notConnected
    /// `connect` while a connection exists or is being negotiated or unloaded.
    case alreadyConnected
    /// `Configuration.versions` is empty.
    case noVersions
    /// REQUESTOFFERS is already waiting for ALLOFFERS_DELIVERED.
    case offersAlreadyRequested
    /// No channel with this relid is offered.
    case unknownChannel(UInt32)
    /// The channel is not in a state that allows the request (open, opening, rescinded...).
    case wrongChannelState(UInt32)
    /// No GPADL with this handle exists.
    case unknownGPADL(UInt32)
    /// The GPADL is not in a state that allows the request, or belongs to another channel.
    case wrongGPADLState(UInt32)
    /// `Configuration.maximumGPADLs` GPADLs exist already.
    case tooManyGPADLs
    /// The page list is empty or does not fit one GPADL range.
    case invalidPageList(count: Int)
    /// The downstream offset does not leave each ring a control page and a data page.
    case invalidRingLayout(downstreamPageOffset: UInt32, pages: Int)
    /// More than 120 bytes of OPENCHANNEL user data.
    case userDataTooLong(Int)
    /// The messages would exceed `Configuration.maximumQueuedMessages`.
    case queueFull
}

/// How HvPostMessage is retried while the host cannot take a message yet, as Linux's
/// `drivers/hv/connection.c: vmbus_post_msg` does: pauses that double from `firstPause` up to
/// `longestPause`, for at most `window` nanoseconds after the first attempt.
public struct PostRetryPolicy: Hashable, Sendable {
    public var firstPause: UInt64
    public var longestPause: UInt64
    public var window: UInt64

    public init(firstPause: UInt64 = 100_000, longestPause: UInt64 = 50_000_000, window: UInt64 = 5_000_000_000) {
        self.firstPause = firstPause
        self.longestPause = longestPause
        self.window = window
    }

    /// Whether a post that failed with `status` may succeed later: the host's queue is full
    /// (INSUFFICIENT_BUFFERS, INSUFFICIENT_MEMORY), or the VMBus server has not registered the
    /// connection yet (INVALID_CONNECTION_ID, as when the partition starts the moment it is created).
    public static func isTransient(_ status: HypercallStatus) -> Bool {
        status == .insufficientBuffers || status == .insufficientMemory || status == .invalidConnectionID
    }
}
