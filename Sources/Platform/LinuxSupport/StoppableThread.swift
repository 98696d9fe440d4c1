import Synchronization

/// A thread whose body waits on `stopEvent` beside its own work; `stop()` signals the event
/// and waits for the body to return.
public final class StoppableThread: Sendable {
    /// Signalled by `stop()` (and when the owner is released); the body polls it and returns.
    public let stopEvent: EventFD
    private let thread = Mutex<OSThread?>(nil)
    /// Posted once the body has returned and let go of what it captured.
    private let finished = CountingSemaphore()

    /// The body, until the thread has run it: emptying the box releases what the body captured
    /// before `finished` is posted.
    private final class Work: @unchecked Sendable {
        // SAFETY: set in init, before the thread starts; afterwards only that thread reads and
        // clears it.
        var body: ((EventFD) -> Void)?

        init(_ body: @escaping (EventFD) -> Void) { self.body = body }
    }

    /// Starts `body` on a new thread; it is sent there, with everything it captures.
    public init(name: String, body: sending @escaping (_ stopEvent: EventFD) -> Void) throws(SystemError) {
        let stopEvent = try EventFD()
        self.stopEvent = stopEvent
        let work = Work(body)
        let finished = finished
        let started = try OSThread.spawn(name: name) {
            work.body?(stopEvent)
            work.body = nil
            finished.post()
        }
        thread.withLock { $0 = started }
    }

    /// Asks the thread to stop without waiting for it: `stop()` then waits. An owner stopping
    /// several asks them all first, so that they wind down side by side.
    public func requestStop() {
        stopEvent.signal()
    }

    /// Stops the thread and waits until its body has returned and released what it captured.
    /// It does not wait for the thread's own exit, which the kernel can hold up after that: a
    /// thread that submitted io_uring requests waits, as it exits, for the kernel workers still
    /// carrying them out, for as long as a file server that stopped answering keeps them
    /// (io_uring's task cancellation at exit). The thread is detached and ends on its own.
    /// Idempotent; must not be called from the thread itself.
    public func stop() {
        stopEvent.signal()
        let current = thread.withLock { value -> OSThread? in
            defer { value = nil }
            return value
        }
        guard let current else { return }
        // The body cannot wait for its own return.
        precondition(!current.isCurrent, "StoppableThread.stop called from its own thread")
        finished.wait()
        current.detach()
    }

    deinit {
        stopEvent.signal()
    }
}
