import HyperV
import LinuxSupport
import Synchronization

/// The receiver of messages a guest posts to a connection (HvPostMessage).
public protocol HvMessageConnection: Sendable {
    /// Takes a message posted by virtual processor `vp`.
    /// - Returns: `.success`, or `.insufficientBuffers` when the receiver's queue is full
    ///   (the guest retries).
    func receive(from vp: UInt32, type: SynICMessageType, payload: [UInt8]) -> HypercallStatus
}

/// Writes a signal to an eventfd for the hypervisor, off the calling processor's thread: for an
/// eventfd another process shares, which that process can make block a writer.
public protocol HvEventRelay: Sendable {
    func signal(_ event: EventFD)
}

/// The partition's connection ports: who receives each message connection, and which
/// eventfd each event connection signals (TLFS "Inter-Partition Communication").
public final class HvConnectionTable: Sendable {
    private let state = Mutex<State>(State())

    private struct State {
        var messages: [ConnectionID: any HvMessageConnection] = [:]
        var events: [ConnectionID: (event: EventFD, relay: (any HvEventRelay)?)] = [:]
    }

    public init() {}

    /// Routes messages posted to `id` to `receiver`, replacing an earlier one.
    public func registerMessageConnection(_ id: ConnectionID, receiver: any HvMessageConnection) {
        state.withLock { $0.messages[id] = receiver }
    }

    public func unregisterMessageConnection(_ id: ConnectionID) {
        state.withLock { _ = $0.messages.removeValue(forKey: id) }
    }

    /// Makes HvSignalEvent on `id` signal `event`: written by `relay` when the eventfd is
    /// another process's (a processor never waits on it), directly when it is the root's.
    public func registerEventConnection(_ id: ConnectionID, event: EventFD, relay: (any HvEventRelay)? = nil) {
        state.withLock { $0.events[id] = (event, relay) }
    }

    public func unregisterEventConnection(_ id: ConnectionID) {
        state.withLock { _ = $0.events.removeValue(forKey: id) }
    }

    func messageReceiver(for id: ConnectionID) -> (any HvMessageConnection)? {
        state.withLock { $0.messages[id] }
    }

    /// Signals the event connection `id`; false if it is not registered.
    func signal(_ id: ConnectionID) -> Bool {
        guard let route = state.withLock({ $0.events[id] }) else { return false }
        if let relay = route.relay { relay.signal(route.event) } else { route.event.signal() }
        return true
    }

    /// The registered message connection IDs.
    public var messageConnections: [ConnectionID] { state.withLock { Array($0.messages.keys).sorted() } }
    /// The registered event connection IDs.
    public var eventConnections: [ConnectionID] { state.withLock { Array($0.events.keys).sorted() } }
}
