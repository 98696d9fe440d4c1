import Synchronization

/// A thread whose body waits on `stopEvent` beside its own work; `stop()` signals the event
/// and joins the thread.
public final class StoppableThread: Sendable {
    /// Signalled by `stop()` (and when the owner is released); the body polls it and returns.
    public let stopEvent: EventFD
    private let thread = Mutex<OSThread?>(nil)

    /// Starts `body` on a new thread; it is sent there, with everything it captures.
    public init(name: String, body: sending @escaping (_ stopEvent: EventFD) -> Void) throws(SystemError) {
        let stopEvent = try EventFD()
        self.stopEvent = stopEvent
        let started = try OSThread.spawn(name: name) { body(stopEvent) }
        thread.withLock { $0 = started }
    }

    /// Asks the thread to stop without waiting for it: `stop()` then waits. An owner stopping
    /// several asks them all first, so that they wind down side by side.
    public func requestStop() {
        stopEvent.signal()
    }

    /// Stops the thread and waits for it. Idempotent; must not be called from the thread itself.
    public func stop() {
        stopEvent.signal()
        let current = thread.withLock { value -> OSThread? in
            defer { value = nil }
            return value
        }
        current?.join()
    }

    deinit {
        stopEvent.signal()
    }
}
