/// A thread that runs jobs one at a time, in the order they were enqueued, from a bounded
/// queue: the serial executor of one child partition's control plane in the parent, so a slow
/// or flooding child delays only itself.
public final class WorkQueue: Sendable {
    public typealias Job = @Sendable () -> Void

    private let jobs: ConditionLock<Jobs>
    private let thread: OSThread
    /// The most jobs that may wait; `enqueue` refuses more.
    public let capacity: Int

    struct Jobs: Sendable {
        var pending: [Job] = []
        var head = 0
        var stopping = false
        /// The thread has run its last job and is returning.
        var ended = false
        var refused: UInt64 = 0
        /// Jobs queued for later, with the CLOCK_MONOTONIC time they become due.
        var timed: [(due: UInt64, job: Job)] = []
        /// Counts the timed jobs ever queued: a new one wakes the thread to look at its time.
        var timedQueued: UInt64 = 0

        var count: Int { pending.count - head }

        /// Moves the timed jobs that are due into the queue, earliest first.
        mutating func promoteDue(now: UInt64) {
            guard timed.contains(where: { $0.due <= now }) else { return }
            let due = timed.filter { $0.due <= now }.sorted { $0.due < $1.due }
            timed.removeAll { $0.due <= now }
            pending.append(contentsOf: due.map(\.job))
        }
    }

    /// Starts the queue's thread.
    public init(name: String, capacity: Int) throws(SystemError) {
        let jobs = ConditionLock(Jobs())
        self.jobs = jobs
        self.capacity = capacity
        thread = try OSThread.spawn(name: name) { WorkQueue.run(jobs) }
    }

    /// Queues `job`. Returns `false`, and drops it, when the queue is full or stopping.
    @discardableResult
    public func enqueue(_ job: @escaping Job) -> Bool {
        jobs.update { jobs in
            guard !jobs.stopping, jobs.count < capacity else {
                jobs.refused &+= 1
                return false
            }
            jobs.pending.append(job)
            return true
        }
    }

    /// Queues `job` to run once `nanoseconds` have passed (after the jobs queued by then).
    /// Returns `false`, and drops it, when the queue is full (jobs waiting and timed jobs count
    /// together) or stopping. A queue that stops drops the timed jobs not yet due.
    @discardableResult
    public func enqueue(afterNanoseconds nanoseconds: UInt64, _ job: @escaping Job) -> Bool {
        let due = MonotonicClock.nanoseconds() &+ nanoseconds
        return jobs.update { jobs in
            guard !jobs.stopping, jobs.count + jobs.timed.count < capacity else {
                jobs.refused &+= 1
                return false
            }
            jobs.timed.append((due, job))
            jobs.timedQueued &+= 1
            return true
        }
    }

    /// How many jobs were refused because the queue was full or stopping.
    public var refusedCount: UInt64 { jobs.read { $0.refused } }

    /// Whether the caller is running on this queue's thread.
    public var isCurrent: Bool { thread.isCurrent }

    /// Runs the jobs already queued, then ends the thread and waits for it. Jobs enqueued after
    /// this are refused. Must not be called from a job (the thread cannot wait for itself).
    public func stop() {
        jobs.update { $0.stopping = true }
        thread.join()
    }

    /// `stop()`, waiting at most `nanoseconds`: a job that waits on something that no longer
    /// answers (a write to a file server gone away) keeps the thread, and the caller is not
    /// kept with it. The thread is then let go to end on its own, with what its jobs hold (a
    /// later stop, of either kind, returns at once).
    /// - Returns: whether the thread ended in time.
    public func stop(withinNanoseconds nanoseconds: UInt64) -> Bool {
        jobs.update { $0.stopping = true }
        guard jobs.wait(until: { $0.ended }, timeoutNanoseconds: nanoseconds, then: { _ in true }) != nil else {
            thread.detach()
            return false
        }
        thread.join()
        return true
    }

    private static func run(_ jobs: ConditionLock<Jobs>) {
        enum Next {
            case run(Job)
            case look  // a timed job fell due or was queued
            case end
        }
        while true {
            // With timed jobs waiting, sleep no longer than until the earliest is due.
            let now = MonotonicClock.nanoseconds()
            let (earliest, seen) = jobs.update { jobs -> (UInt64?, UInt64) in
                jobs.promoteDue(now: now)
                return (jobs.timed.map(\.due).min(), jobs.timedQueued)
            }
            let timeout = earliest.map { $0 > now ? $0 - now : 0 }
            let next = jobs.wait(until: { $0.count > 0 || $0.stopping || $0.timedQueued != seen },
                                 timeoutNanoseconds: timeout) { jobs -> Next in
                guard jobs.count > 0 else { return jobs.stopping ? .end : .look }
                let job = jobs.pending[jobs.head]
                jobs.head += 1
                if jobs.head == jobs.pending.count {
                    jobs.pending.removeAll(keepingCapacity: true)
                    jobs.head = 0
                } else if jobs.head >= 64 && jobs.head * 2 >= jobs.pending.count {
                    jobs.pending.removeFirst(jobs.head)
                    jobs.head = 0
                }
                return .run(job)
            } ?? .look
            switch next {
            case .run(let job): job()
            case .look: continue
            case .end:
                jobs.update { $0.ended = true }
                return
            }
        }
    }
}
