import CLinux
import Glibc
import Synchronization

/// A named POSIX thread for work that must not share the Swift concurrency pool: virtual
/// processors blocked in KVM_RUN, channel workers blocked on eventfds, socket readers.
public final class OSThread: Sendable {
    private let handle: Mutex<pthread_t?>
    private let finished: Atomic<Bool>
    /// The kernel thread id, once the thread has started (0 before).
    private let threadID: Atomic<Int32>

    private final class Start: @unchecked Sendable {
        // SAFETY: written once before pthread_create and read once by the new thread; `body`
        // was handed over with `sending`, so nothing else can reach what it captures.
        let body: () -> Void
        let name: String
        let thread: OSThread
        init(body: @escaping () -> Void, name: String, thread: OSThread) {
            self.body = body
            self.name = name
            self.thread = thread
        }
    }

    private init() {
        handle = Mutex(nil)
        finished = Atomic(false)
        threadID = Atomic(0)
    }

    /// Starts `body` on a new thread called `name` (truncated to 15 bytes, the kernel's limit).
    /// `body` is sent to the new thread: what it captures belongs to that thread from then on.
    public static func spawn(name: String, _ body: sending @escaping () -> Void) throws(SystemError) -> OSThread {
        OSThread.installInterruptHandler()
        let thread = OSThread()
        let start = Unmanaged.passRetained(Start(body: body, name: name, thread: thread))
        var pthread = pthread_t()
        let result = pthread_create(&pthread, nil, { argument in
            // SAFETY: `argument` is the retained Start passed below; taken back exactly once.
            let start = Unmanaged<Start>.fromOpaque(argument!).takeRetainedValue()
            _ = clinux_set_thread_name(start.name)
            // Threads inherit their creator's signal mask, and Swift concurrency's worker
            // threads block signals; `interrupt()` needs SIGUSR1 delivered here.
            var unblock = sigset_t()
            sigemptyset(&unblock)
            sigaddset(&unblock, SIGUSR1)
            pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
            start.thread.threadID.store(clinux_gettid(), ordering: .releasing)
            start.body()
            start.thread.finished.store(true, ordering: .releasing)
            return nil
        }, start.toOpaque())
        guard result == 0 else {
            start.release()
            throw SystemError("start thread \(name)", errno: .init(rawValue: result))
        }
        thread.handle.withLock { $0 = pthread }
        return thread
    }

    /// Whether the caller is running on this thread.
    public var isCurrent: Bool {
        let id = threadID.load(ordering: .acquiring)
        return id != 0 && id == clinux_gettid()
    }

    /// Whether the body has returned.
    public var isFinished: Bool { finished.load(ordering: .acquiring) }

    /// The thread's kernel thread id (gettid(2)), as cgroup `tasks` and `/proc/<pid>/task`
    /// name it; nil until the thread has started running.
    public var kernelThreadID: Int32? {
        let id = threadID.load(ordering: .acquiring)
        return id == 0 ? nil : id
    }

    /// The calling thread's kernel thread id (gettid(2)).
    public static var currentKernelThreadID: Int32 { clinux_gettid() }

    /// Nanoseconds of processor time the calling thread has used (CLOCK_THREAD_CPUTIME_ID).
    public static var currentCPUNanoseconds: UInt64 {
        var time = timespec()
        guard clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time) == 0 else { return 0 }
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }

    /// A thread nobody joins is detached when its last owner lets go (at the latest when its
    /// body returns), so its stack and descriptor go back to the system: fire-and-forget threads
    /// (a detach, a teardown) otherwise stayed allocated until the process exited (found by
    /// ThreadSanitizer's thread-leak report).
    deinit {
        if let pthread = handle.withLock({ $0.take() }) { pthread_detach(pthread) }
    }

    /// Waits for the body to return. Call at most once.
    public func join() {
        guard let pthread = handle.withLock({ value -> pthread_t? in
            let current = value
            value = nil
            return current
        }) else { return }
        pthread_join(pthread, nil)
    }

    /// Lets the thread's stack and descriptor go as soon as its body returns, for a thread nobody
    /// will join (a joinable thread that ends unjoined keeps them until the process exits). Call
    /// at most once, instead of `join()`.
    public func detach() {
        guard let pthread = handle.withLock({ value -> pthread_t? in
            let current = value
            value = nil
            return current
        }) else { return }
        pthread_detach(pthread)
    }

    /// Interrupts a blocking system call on the thread (such as KVM_RUN or poll) with SIGUSR1,
    /// whose handler does nothing, so the call returns EINTR.
    public func interrupt() {
        handle.withLock { value in
            if let pthread = value, !isFinished { _ = pthread_kill(pthread, SIGUSR1) }
        }
    }

    private static let handlerInstalled = Atomic<Bool>(false)

    /// SIGUSR1 with an empty handler and no SA_RESTART, so interrupted calls fail with EINTR.
    public static func installInterruptHandler() {
        guard handlerInstalled.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return }
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(SIGUSR1, &action, nil)
    }
}
