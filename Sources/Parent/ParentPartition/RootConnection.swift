import ControlProtocol
import Glibc
import LinuxSupport
import Synchronization

/// The parent's end of the control socket to the root scheduler.
///
/// Requests that need an answer (doorbells) are asynchronous: the answer arrives on the
/// reader thread, which must never block waiting for itself.
public final class RootConnection: Sendable {
    let channel: ControlChannel
    private let sendLock = Mutex<Void>(())
    private let nextRequest = Atomic<UInt32>(1)
    private let pending = Mutex<[UInt32: @Sendable (EventFD?) -> Void]>([:])

    init(channel: ControlChannel) {
        self.channel = channel
    }

    /// Connects, says hello and waits for the root's welcome.
    static func connect(path: String) throws -> RootConnection {
        let socket = try SequencedPacketSocket.connect(path: path)
        let channel = ControlChannel(socket: socket)
        try channel.send(.hello(parentProcessID: UInt32(getpid())))
        guard case .message(.welcome, _) = try channel.receiveRootMessage() else {
            throw ControlProtocolError.unknownKind(0)
        }
        return RootConnection(channel: channel)
    }

    func send(_ message: ParentMessage, descriptors: [Int32] = []) {
        sendLock.withLock { _ in try? channel.send(message, descriptors: descriptors) }
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

    /// Completes a doorbell request (reader thread).
    func complete(request: UInt32, doorbell: EventFD?) {
        let completion = pending.withLock { $0.removeValue(forKey: request) }
        completion?(doorbell)
    }
}
