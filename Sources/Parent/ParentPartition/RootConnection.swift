import ControlProtocol
import Glibc
import LinuxSupport
import Logging
import Synchronization

/// The parent's end of the control socket to the root scheduler.
///
/// Requests that need an answer (doorbells) are asynchronous: the answer arrives on the
/// reader thread, which must never block waiting for itself.
///
/// Sends do not throw: a message the root does not get is logged. A failing socket means the
/// root is going away: the reader thread then sees the connection end, every child is detached
/// (requests still waiting for an answer go with their connection), and the root attaches them
/// again when the parent reconnects.
public final class RootConnection: Sendable {
    let channel: ControlChannel
    let logger: Logger
    private let sendLock = Mutex<Void>(())
    private let nextRequest = Atomic<UInt32>(1)
    private let pending = Mutex<[UInt32: @Sendable (EventFD?) -> Void]>([:])
    /// Whether a message the root did not get was already logged as a warning.
    private let dropLogged = Atomic<Bool>(false)

    init(channel: ControlChannel, logger: Logger) {
        self.channel = channel
        self.logger = logger
    }

    /// How long the parent waits for the root's welcome.
    static let welcomeTimeoutMilliseconds: Int32 = 10_000

    /// Says hello on a connected socket and waits (up to `welcomeTimeoutMilliseconds`) for the
    /// root's welcome.
    static func handshake(on socket: SequencedPacketSocket, logger: Logger) throws -> RootConnection {
        let channel = ControlChannel(socket: socket)
        try channel.send(.hello(parentProcessID: UInt32(getpid())))
        guard try Poll.wait(on: [socket.owned.rawValue], timeoutMilliseconds: welcomeTimeoutMilliseconds).first == true else {
            throw SystemError("wait for the root scheduler's welcome", errno: .timedOut)
        }
        guard case .message(.welcome, _) = try channel.receiveRootMessage() else {
            throw ControlProtocolError.unknownKind(0)
        }
        return RootConnection(channel: channel, logger: logger)
    }

    /// Sends `message`; a failure is logged, the first on this connection as a warning.
    /// - Returns: whether the root got it.
    @discardableResult
    func send(_ message: ParentMessage, descriptors: [Int32] = []) -> Bool {
        do throws(SystemError) {
            try sendLock.withLock { _ throws(SystemError) in try channel.send(message, descriptors: descriptors) }
            return true
        } catch {
            let what = "\(message)".prefix(120)
            if dropLogged.exchange(true, ordering: .relaxed) {
                logger.debug("the root scheduler did not get \(what): \(error)")
            } else {
                logger.warning("the root scheduler did not get \(what): \(error)")
            }
            return false
        }
    }

    /// Routes HvPostMessage on `connectionID` of partition `id` to this parent.
    public func registerMessageConnection(partitionID id: UInt32, connectionID: UInt32) {
        send(.registerMessageConnection(partitionID: id, connectionID: connectionID))
    }

    public func unregisterMessageConnection(partitionID id: UInt32, connectionID: UInt32) {
        send(.unregisterMessageConnection(partitionID: id, connectionID: connectionID))
    }

    /// Makes HvSignalEvent on `connectionID` signal `event` (an ioeventfd in the root's VM).
    public func registerEventConnection(partitionID id: UInt32, connectionID: UInt32, event: EventFD) {
        send(.registerEventConnection(partitionID: id, connectionID: connectionID), descriptors: [event.rawValue])
    }

    public func unregisterEventConnection(partitionID id: UInt32, connectionID: UInt32) {
        send(.unregisterEventConnection(partitionID: id, connectionID: connectionID))
    }

    /// Posts a SynIC message to the guest.
    public func postMessage(partitionID id: UInt32, vp: UInt32, sint: UInt8, type: UInt32, payload: [UInt8]) {
        send(.postMessage(partitionID: id, vp: vp, sint: sint, messageType: type, payload: payload))
    }

    /// Reports facts the root shows users.
    public func reportStatus(partitionID id: UInt32, facts: [String: String]) {
        send(.partitionStatus(partitionID: id, facts: facts))
    }

    /// Asks for a doorbell; `completion` runs on the reader thread with the eventfd (or nil).
    func requestDoorbell(partitionID id: UInt32, vp: UInt32, sint: UInt8,
                         completion: @escaping @Sendable (EventFD?) -> Void) {
        let request = nextRequest.wrappingAdd(1, ordering: .relaxed).oldValue
        pending.withLock { $0[request] = completion }
        send(.requestDoorbell(requestID: request, partitionID: id, vp: vp, sint: sint))
    }

    /// Asks for an eventfd that raises IOAPIC pin `pin`; `completion` runs on the reader thread.
    func requestInterruptLine(partitionID id: UInt32, pin: UInt8, completion: @escaping @Sendable (EventFD?) -> Void) {
        let request = nextRequest.wrappingAdd(1, ordering: .relaxed).oldValue
        pending.withLock { $0[request] = completion }
        send(.requestInterruptLine(requestID: request, partitionID: id, pin: pin))
    }

    /// Ends the connection: shuts the socket down and forgets unanswered requests.
    func close() {
        channel.socket.shutdown()
        pending.withLock { $0.removeAll() }
    }

    /// Completes a doorbell request (reader thread).
    func complete(request: UInt32, doorbell: EventFD?) {
        let completion = pending.withLock { $0.removeValue(forKey: request) }
        completion?(doorbell)
    }
}
