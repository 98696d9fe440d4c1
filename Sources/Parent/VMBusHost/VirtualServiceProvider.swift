import VMBusProtocol

/// A device served over a VMBus channel by the parent partition (a VSP). Each open channel
/// runs on its own worker thread; every method but `channelOpened` is called on that thread.
/// `channelOpened` runs on the parent's root-reader thread before the worker starts (and if the
/// worker then cannot start, `channelClosed` follows on that same thread).
public protocol VirtualServiceProvider: AnyObject, Sendable {
    /// The channel opened: prepare to serve. Returning `false` refuses the open. Called on the
    /// parent's root-reader thread, before the channel's worker thread exists.
    func channelOpened(_ channel: VSPChannel) -> Bool
    /// A packet from the guest. Throwing closes (and rescinds) this channel only.
    func handle(_ packet: IncomingPacket, on channel: VSPChannel) throws(VSPError)
    /// Called about every `tickInterval` nanoseconds while open (`nil`: never).
    var tickInterval: UInt64? { get }
    func tick(on channel: VSPChannel)
    /// Background work (e.g. producing data); called on every worker iteration.
    /// - Returns: whether it did something (the worker keeps polling while it does).
    func work(on channel: VSPChannel) throws(VSPError) -> Bool
    /// The channel closed (guest close, rescind, unload or partition stop).
    func channelClosed()
}

extension VirtualServiceProvider {
    public var tickInterval: UInt64? { nil }
    public func tick(on channel: VSPChannel) {}
    public func work(on channel: VSPChannel) throws(VSPError) -> Bool { false }
    public func channelClosed() {}
}

/// A packet read from the guest→host ring. `bytes` is the packet from its descriptor through its
/// padding (the worker reuses its storage, so keep copies of what must outlive `handle`).
public struct IncomingPacket {
    public var descriptor: PacketDescriptor
    public var bytes: [UInt8]

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

    public var description: String {
        switch self {
        case .protocolViolation(let reason): "device protocol violation: \(reason)"
        case .ring(let reason): "corrupt ring: \(reason)"
        }
    }
}
