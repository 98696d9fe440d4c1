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
        var refused: UInt64 = 0

        var count: Int { pending.count - head }
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

    private static func run(_ jobs: ConditionLock<Jobs>) {
        while true {
            let job = jobs.wait(until: { $0.count > 0 || $0.stopping }) { jobs -> Job? in
                guard jobs.count > 0 else { return nil }
                let job = jobs.pending[jobs.head]
                jobs.head += 1
                if jobs.head == jobs.pending.count {
                    jobs.pending.removeAll(keepingCapacity: true)
                    jobs.head = 0
                } else if jobs.head >= 64 && jobs.head * 2 >= jobs.pending.count {
                    jobs.pending.removeFirst(jobs.head)
                    jobs.head = 0
                }
                return job
            }
            guard let job = job ?? nil else { return }
            job()
        }
    }
}
