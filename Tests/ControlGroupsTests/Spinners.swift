import ControlGroups
import Glibc
import LinuxSupport
import Synchronization
import Testing

/// Real threads that spin until stopped, standing in for virtual processors.
final class Spinners: Sendable {
    private final class Flag: Sendable {
        let stopping = Atomic<Bool>(false)
    }

    private let flag = Flag()
    private let threads: [OSThread]

    init(count: Int, name: String = "spin") throws {
        let flag = flag
        var threads: [OSThread] = []
        for index in 0..<count {
            threads.append(try OSThread.spawn(name: "\(name)\(index)") {
                while !flag.stopping.load(ordering: .relaxed) {}
            })
        }
        self.threads = threads
    }

    /// The threads' kernel ids, waiting (up to 10 s) for each to start.
    func threadIDs() throws -> [Int32] {
        let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
        var ids: [Int32] = []
        for thread in threads {
            while thread.kernelThreadID == nil && MonotonicClock.nanoseconds() < deadline { usleep(1000) }
            ids.append(try #require(thread.kernelThreadID, "a spinning thread did not start within 10 s"))
        }
        return ids
    }

    func stop() {
        flag.stopping.store(true, ordering: .relaxed)
        for thread in threads { thread.join() }
    }

    deinit { stop() }
}

/// Waits (up to 10 s) until thread `tid` has run at least `nanoseconds` more than `since`.
func waitUntilThread(_ tid: Int32, hasRun nanoseconds: UInt64, since start: UInt64) throws {
    let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
    while try ThreadCPUTime.nanoseconds(thread: tid) < start + nanoseconds {
        guard MonotonicClock.nanoseconds() < deadline else {
            Issue.record("thread \(tid) did not run \(nanoseconds) ns within 10 s")
            return
        }
        usleep(1000)
    }
}
