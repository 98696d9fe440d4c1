import Glibc
import LinuxSupport
import Synchronization
import SystemPackage
import Testing

@Suite("eventfd")
struct EventFDTests {
    @Test func signalsAccumulateUntilConsumed() throws {
        let event = try EventFD()
        #expect(event.consume() == nil)
        event.signal()
        event.signal(2)
        #expect(event.consume() == 3)
        #expect(event.consume() == nil)
    }

    @Test func waitTimesOutWhenNothingArrives() throws {
        let event = try EventFD()
        #expect(try event.wait(timeoutMilliseconds: 10) == nil)
    }

    @Test func listenerRunsItsHandlerOnEachSignalAndStops() throws {
        let event = try EventFD()
        let seen = Mutex<UInt64>(0)
        let listener = try EventListener(name: "test", event: event) { count in seen.withLock { $0 += count } }
        event.signal()
        // Up to 10 s: a loaded host may take long to run the listener's thread at all.
        for _ in 0..<10_000 where seen.withLock({ $0 }) == 0 { usleep(1000) }
        listener.stop()
        #expect(seen.withLock { $0 } == 1)
    }
}

@Suite("SOCK_SEQPACKET with SCM_RIGHTS")
struct SequencedPacketSocketTests {
    @Test func messagesKeepTheirBoundaries() throws {
        let (a, b) = try SequencedPacketSocket.pair()
        try a.send([1, 2, 3])
        try a.send([4])
        #expect(try b.receive().bytes == [1, 2, 3])
        #expect(try b.receive().bytes == [4])
    }

    @Test func descriptorsTravelWithTheMessage() throws {
        let (a, b) = try SequencedPacketSocket.pair()
        let event = try EventFD()
        try a.send([9], descriptors: [event.rawValue])
        let (bytes, descriptors) = try b.receive()
        #expect(bytes == [9] && descriptors.count == 1)
        // The received descriptor is the same eventfd.
        let copy = EventFD(adopting: try #require(descriptors.first))
        copy.signal()
        #expect(event.consume() == 1)
    }

    @Test func peerCloseReadsAsEmpty() throws {
        let (a, b) = try SequencedPacketSocket.pair()
        a.shutdown()
        let (bytes, descriptors) = try b.receive()
        #expect(bytes.isEmpty && descriptors.isEmpty)
    }

    @Test func nonBlockingSendReportsAFullPeer() throws {
        let (a, b) = try SequencedPacketSocket.pair()
        defer { withExtendedLifetime(b) {} }
        var sawFull = false
        for _ in 0..<100_000 {
            do {
                try a.send([UInt8](repeating: 0, count: 1024), nonBlocking: true)
            } catch {
                #expect(error.errno == .resourceTemporarilyUnavailable)
                sawFull = true
                break
            }
        }
        #expect(sawFull)
    }

    @Test func listenAndConnectOverAPath() throws {
        let path = "/tmp/hv-socket-test-\(getpid())"
        let listener = try SequencedPacketSocket.listen(path: path)
        defer { unlink(path) }
        let client = try SequencedPacketSocket.connect(path: path)
        let server = try listener.accept()
        try client.send([7])
        #expect(try server.receive().bytes == [7])
    }

    @Test func connectingToNothingNamesThePath() {
        #expect(throws: SystemError.self) { try SequencedPacketSocket.connect(path: "/tmp/hv-no-such-socket") }
        do {
            _ = try SequencedPacketSocket.connect(path: "/tmp/hv-no-such-socket")
        } catch {
            #expect(error.operation == "connect to /tmp/hv-no-such-socket")
            #expect(error.errno == .noSuchFileOrDirectory)
        }
    }
}

@Suite("Threads")
struct OSThreadTests {
    @Test func interruptBreaksABlockingCall() throws {
        let event = try EventFD()
        let result = Mutex<String>("")
        let thread = try OSThread.spawn(name: "blocked") {
            // A blocking poll with no timeout; EINTR is retried by Poll, so use a raw read.
            var value: UInt64 = 0
            let count = withUnsafeMutableBytes(of: &value) { read(event.rawValue, $0.baseAddress, 8) }
            result.withLock { $0 = count == -1 && errno == EINTR ? "interrupted" : "read \(count)" }
        }
        // A signal that lands before the thread is in read() is lost: repeat it until the read
        // reports back (each one that lands while it blocks ends it).
        for _ in 0..<1000 where result.withLock({ $0 }).isEmpty {
            thread.interrupt()
            usleep(10_000)
        }
        thread.join()
        #expect(result.withLock { $0 } == "interrupted")
    }

    @Test func conditionLockWakesWaiters() throws {
        let lock = ConditionLock(0)
        let thread = try OSThread.spawn(name: "setter") {
            usleep(20_000)
            lock.update { $0 = 5 }
        }
        let value = lock.wait(until: { $0 == 5 }) { $0 }
        thread.join()
        #expect(value == 5)
        #expect(lock.wait(until: { $0 == 6 }, timeoutNanoseconds: 1_000_000) { $0 } == nil)
    }
}

@Suite("memfd")
struct MemoryFileTests {
    @Test func createdFilesHaveTheRequestedSize() throws {
        let file = try MemoryFile.create(name: "test", size: 1 << 20)
        #expect(try MemoryFile.size(of: file) == 1 << 20)
    }

    /// `readAll` reads what is there, up to the count, from offset 0, whatever the file
    /// position: a longer file is cut at the count, a shorter one read whole.
    @Test func readAllReadsUpToItsCount() throws {
        let file = try MemoryFile.create(name: "read", size: 0)
        let content = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        #expect(content.withUnsafeBytes { write(file.rawValue, $0.baseAddress, $0.count) } == content.count)
        #expect(try file.readAll(upTo: 20_000) == content)
        #expect(try file.readAll(upTo: 4097) == Array(content.prefix(4097)))
        #expect(try file.readAll(upTo: 0).isEmpty)
    }
}

@Suite("SOCK_SEQPACKET limits")
struct SequencedPacketLimitTests {
    /// A message larger than the peer can receive is an error the caller handles, never a trap
    /// of the sending process. Before: a precondition failure, which killed the root when a
    /// partition's devices made its attachment too large.
    @Test func anOversizedMessageIsRefusedWithAnError() throws {
        let (left, right) = try SequencedPacketSocket.pair()
        #expect(throws: SystemError.self) {
            try left.send([UInt8](repeating: 1, count: SequencedPacketSocket.maximumMessageSize + 1))
        }
        let descriptors = [Int32](repeating: 0, count: SequencedPacketSocket.maximumDescriptors + 1)
        do {
            try left.send([1], descriptors: descriptors)
            Issue.record("too many descriptors were sent")
        } catch {
            #expect(error.errno == .messageTooLong)
        }
        try left.send([7])
        #expect(try right.receive().bytes == [7])
    }
}

@Suite("WorkQueue")
struct WorkQueueTests {
    /// A timed job runs after its delay, after the jobs queued before it fell due, and one
    /// queued later with a shorter delay runs first: the thread looks at the time again
    /// whenever a timed job is queued.
    @Test func timedJobsRunWhenDueInTheOrderTheyFallDue() throws {
        let queue = try WorkQueue(name: "wq-test", capacity: 8)
        let log = Mutex<[String]>([])
        let start = MonotonicClock.nanoseconds()
        #expect(queue.enqueue(afterNanoseconds: 300_000_000) { log.withLock { $0.append("late") } })
        #expect(queue.enqueue(afterNanoseconds: 100_000_000) {
            log.withLock { $0.append("early after \(MonotonicClock.nanoseconds() - start >= 100_000_000)") }
        })
        #expect(queue.enqueue { log.withLock { $0.append("now") } })
        let deadline = start + 10_000_000_000
        while log.withLock({ $0.count }) < 3, MonotonicClock.nanoseconds() < deadline { usleep(10_000) }
        #expect(log.withLock { $0 } == ["now", "early after true", "late"])
        queue.stop()
    }

    /// Stopping runs what is queued and drops the timed jobs not yet due; timed jobs count
    /// against the capacity.
    @Test func stoppingDropsTimedJobsNotYetDueAndTheyCountAgainstCapacity() throws {
        let queue = try WorkQueue(name: "wq-test", capacity: 2)
        let ran = Mutex(0)
        #expect(queue.enqueue(afterNanoseconds: 60_000_000_000) { ran.withLock { $0 += 100 } })
        #expect(queue.enqueue(afterNanoseconds: 60_000_000_000) { ran.withLock { $0 += 100 } })
        #expect(!queue.enqueue(afterNanoseconds: 1) { ran.withLock { $0 += 100 } }, "full")
        queue.stop()
        #expect(ran.withLock { $0 } == 0)
        #expect(!queue.enqueue { ran.withLock { $0 += 1 } })
    }

    /// A stop with a deadline does not wait for a job that does not end (a write to a file
    /// server gone away): it lets the thread go, and the job still finishes on it later. A
    /// queue whose jobs end in time is stopped as `stop()` stops it.
    @Test func aStopWithADeadlineLetsAStuckJobGo() throws {
        let queue = try WorkQueue(name: "wq-test", capacity: 4)
        let released = ConditionLock(false)
        let finished = ConditionLock(false)
        #expect(queue.enqueue {
            _ = released.wait(until: { $0 }, timeoutNanoseconds: 30_000_000_000) { _ in true }
            finished.update { $0 = true }
        })
        #expect(!queue.stop(withinNanoseconds: 200_000_000))
        #expect(!queue.enqueue {})
        released.update { $0 = true }
        #expect(finished.wait(until: { $0 }, timeoutNanoseconds: 10_000_000_000) { _ in true } != nil)

        let quick = try WorkQueue(name: "wq-test", capacity: 4)
        let ran = ConditionLock(0)
        #expect(quick.enqueue { ran.update { $0 += 1 } })
        #expect(quick.stop(withinNanoseconds: 10_000_000_000))
        #expect(ran.read { $0 } == 1)
    }
}

@Suite("Resource limits")
struct OpenFileLimitTests {
    /// The root raises its soft limit on descriptors to the hard one: it holds several per
    /// partition (two eventfds per doorbell among them).
    @Test func theSoftLimitOnOpenFilesIsRaisedToTheHardOne() {
        let raised = OpenFileLimit.raiseToHard()
        var limit = rlimit()
        #expect(getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0)
        #expect(limit.rlim_cur == limit.rlim_max && raised == UInt64(limit.rlim_cur))
    }
}
