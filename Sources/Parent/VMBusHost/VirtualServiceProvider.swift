import VMBusProtocol

/// A device served over VMBus by the parent partition: a virtual service provider (VSP).
///
/// The provider is shared: the parent's control thread asks it for sessions, users' requests
/// reach it from other threads, and each of its open channels runs on its own worker thread.
/// So it holds only what is shared (configuration, back ends, atomics and locks), and keeps
/// everything that belongs to one open channel in the `ChannelSession` it opens for it.
public protocol VirtualServiceProvider: Sendable {
    /// The guest opened one of the device's channels: the session that serves it, or `nil` to
    /// refuse the open. Called on the parent's control thread; the session is then sent to the
    /// channel's worker thread and used only there.
    func openSession(_ opening: ChannelOpening) -> sending (any ChannelSession)?

    /// The parent restarted while the guest had this channel open: a session that carries on
    /// over the same rings (where the last parent stopped: the ring indices live in guest
    /// memory), or `nil` when the device lost state the guest relies on (requests in flight, a
    /// negotiated buffer). A `nil` has the channel rescinded and the device offered again, which
    /// the guest handles as a hot-remove and a hot-add; that is the default. Called on the
    /// parent's control thread.
    func resumeSession(_ opening: ChannelOpening) -> sending (any ChannelSession)?

    /// The parent restarted while the guest had this channel open and `resumeSession` could not
    /// carry it on: a session that serves the channel while it is rescinded, until the guest
    /// closes it. It answers what the guest's driver waits for before it lets the device go
    /// (Linux's netvsc waits for the completion of every send in flight, the HALT included);
    /// without one the channel is closed as it is rescinded, and such a driver can wait
    /// forever. `nil` (the default) for devices whose guest drivers wait for nothing.
    func withdrawalSession(_ opening: ChannelOpening) -> sending (any ChannelSession)?
}

extension VirtualServiceProvider {
    public func resumeSession(_ opening: ChannelOpening) -> sending (any ChannelSession)? { nil }
    public func withdrawalSession(_ opening: ChannelOpening) -> sending (any ChannelSession)? { nil }
}

/// A provider that holds something beyond its channels (a NIC's switch port): the parent calls
/// `detach` once its device is gone — removed from the partition or the partition detached —
/// after its channels have closed.
public protocol DetachableProvider: VirtualServiceProvider, AnyObject {
    func detach()
}

/// A channel the guest is opening.
public struct ChannelOpening: Hashable, Sendable {
    public var relID: UInt32
    /// 0 for the device's primary channel, 1, 2, … for the sub-channels it asked for.
    public var subChannelIndex: UInt16
    /// The processor that receives the channel's events (until MODIFYCHANNEL moves them).
    public var targetVP: UInt32

    public init(relID: UInt32, subChannelIndex: UInt16 = 0, targetVP: UInt32) {
        self.relID = relID
        self.subChannelIndex = subChannelIndex
        self.targetVP = targetVP
    }
}

/// One open channel's share of a device, confined to the channel's worker thread: the worker
/// calls `start`, then `handle`, `tick` and `work` as packets arrive and time passes, and `close`
/// once when the channel closes (guest close, rescind, unload, partition stop or a failure).
/// Confinement is what lets a session keep plain mutable state.
public protocol ChannelSession: AnyObject {
    /// The channel is open: send what the device says first (e.g. an integration service's
    /// NEGOTIATE). Throwing closes and rescinds the channel.
    func start(on channel: VSPChannel) throws(VSPError)
    /// A packet from the guest. Throwing closes (and rescinds) this channel only.
    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError)
    /// How often `tick` runs, in nanoseconds (`nil`: never).
    var tickInterval: UInt64? { get }
    /// Periodic work (heartbeats, time samples).
    func tick(on channel: VSPChannel) throws(VSPError)
    /// Background work (e.g. producing data, reaping a back end's completions), called on every
    /// worker iteration.
    /// - Returns: whether it did something (the worker keeps polling while it does).
    func work(on channel: VSPChannel) throws(VSPError) -> Bool
    /// The channel closed; release what the session holds.
    func close()

    /// Whether the session takes another packet off the guest→host ring now. A session that
    /// could not answer it without queueing (the host→guest ring lacks room for the completions
    /// it owes, its back end is saturated) says no: the worker leaves the packet in the ring,
    /// keeps the guest's signals masked, and waits for `wakeDescriptors` or the guest's doorbell
    /// (which rings when the guest frees the space `VSPChannel.hasRoom` asked for).
    func acceptsPacket(on channel: VSPChannel) -> Bool
    /// Whether the answers the session staged are due now, before the worker's pass over the
    /// ring ends: the worker then publishes them and lets go of the packets read so far, as it
    /// does after every `ChannelWorker.commitBytes` read. A session whose answers pace the guest
    /// asks for it once they are worth sending.
    func answersAreDue(on channel: VSPChannel) -> Bool
    /// Descriptors besides the guest's doorbell that must wake the worker when it sleeps, such as
    /// a back end's completion eventfd. Asked each time the worker goes to sleep.
    var wakeDescriptors: [Int32] { get }
    /// The worker found nothing to do and is about to sleep: a last look at the session's own
    /// sources (clear their events, then check them, so that anything arriving later wakes the
    /// worker).
    /// - Returns: whether it did something (the worker then goes on instead of sleeping).
    func beforeSleeping(on channel: VSPChannel) throws(VSPError) -> Bool
    /// When the worker must wake even if nothing signals it (monotonic nanoseconds; `nil`:
    /// only at the next `tick`): a session holding packets back for a bounded time gives up
    /// waiting then. Asked each time the worker goes to sleep.
    var wakeDeadline: UInt64? { get }
}

extension ChannelSession {
    public func start(on channel: VSPChannel) throws(VSPError) {}
    public var tickInterval: UInt64? { nil }
    public func tick(on channel: VSPChannel) throws(VSPError) {}
    public func work(on channel: VSPChannel) throws(VSPError) -> Bool { false }
    public func close() {}
    public func acceptsPacket(on channel: VSPChannel) -> Bool { true }
    public func answersAreDue(on channel: VSPChannel) -> Bool { false }
    public var wakeDescriptors: [Int32] { [] }
    public func beforeSleeping(on channel: VSPChannel) throws(VSPError) -> Bool { false }
    public var wakeDeadline: UInt64? { nil }
}

/// A packet read from the guest→host ring. `bytes` is the packet from its descriptor through its
/// padding (the worker reuses its storage, so keep copies of what must outlive `handle`).
public struct IncomingPacket {
    public var descriptor: PacketDescriptor
    public var bytes: [UInt8]

    public init(descriptor: PacketDescriptor, bytes: [UInt8]) {
        self.descriptor = descriptor
        self.bytes = bytes
    }

    /// The payload: from the descriptor's data offset to the packet's end (padding included).
    public var payload: ArraySlice<UInt8> {
        let start = min(descriptor.payloadOffset, bytes.count)
        let end = min(descriptor.totalLength, bytes.count)
        return bytes[start..<max(start, end)]
    }
}

/// Why a VSP gave up on a channel.
public enum VSPError: Error, Equatable, CustomStringConvertible {
    /// The guest broke the device protocol.
    case protocolViolation(String)
    /// The ring is corrupt (bad indices or descriptors).
    case ring(String)
    /// The device's back end failed (what it was doing and why).
    case backend(String)

    public var description: String {
        switch self {
        case .protocolViolation(let reason): "device protocol violation: \(reason)"
        case .ring(let reason): "corrupt ring: \(reason)"
        case .backend(let reason): "back end failure: \(reason)"
        }
    }
}
