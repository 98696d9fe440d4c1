/// A thread that runs `handler` each time an eventfd is signalled, until stopped.
///
/// Used for guest→host doorbells (ioeventfds) in the parent partition: the kernel signals
/// the eventfd when the guest writes the port, and this thread wakes.
public final class EventListener: Sendable {
    public let event: EventFD
    private let thread: StoppableThread

    /// Starts listening.
    /// - Parameter handler: runs on the listener's thread with the count that woke it.
    public init(name: String, event: EventFD, handler: @escaping @Sendable (UInt64) -> Void) throws(SystemError) {
        self.event = event
        thread = try StoppableThread(name: name) { stopEvent in
            while true {
                guard let ready = try? Poll.wait(on: [event.rawValue, stopEvent.rawValue], timeoutMilliseconds: -1) else {
                    return
                }
                if ready[1] { return }
                // Readable, and only this thread reads it: the read returns at once.
                if ready[0], let count = try? event.wait() { handler(count) }
            }
        }
    }

    /// Stops the thread and waits for it. Idempotent.
    public func stop() {
        thread.stop()
    }
}
