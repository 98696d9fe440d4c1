import CDiskIO
import Glibc
import GuestMemory
import LinuxSupport
import Synchronization
import SystemPackage

/// A pool of threads that each take one operation at a time and carry it out with a blocking
/// system call (preadv, pwritev2, fdatasync, fallocate), then post the completion and signal
/// `completionEvent`.
public final class ThreadPoolEngine: DiskIOEngine, @unchecked Sendable {
    // SAFETY: `staged` and `threads` are touched only by the owner's thread; everything shared
    // with the pool threads is in `shared`, behind a mutex with a condition variable (the work)
    // or a mutex (the completions).
    public let capacity: Int
    private let shared: Shared
    private var staged: [DiskEngineOperation] = []
    private var threads: [OSThread] = []

    /// What the owner and the pool threads share.
    private final class Shared: Sendable {
        let work = Mutex(WorkQueue())
        /// Counts queued operations (and, at shutdown, one wake-up per thread): each post wakes
        /// one thread, where a condition variable broadcast would wake them all.
        let available = CountingSemaphore()
        let finished = Mutex<[DiskEngineCompletion]>([])
        let event: EventFD

        init(event: EventFD) { self.event = event }
    }

    public var completionEvent: EventFD { shared.event }

    struct WorkQueue: @unchecked Sendable {
        // SAFETY: only touched under the mutex.
        var operations: [DiskEngineOperation] = []
        var head = 0

        var isEmpty: Bool { head == operations.count }

        mutating func take() -> DiskEngineOperation? {
            guard head < operations.count else { return nil }
            let operation = operations[head]
            head += 1
            if head == operations.count {
                operations.removeAll(keepingCapacity: true)
                head = 0
            }
            return operation
        }
    }

    /// A pool of `threads` threads for up to `capacity` operations in flight.
    public init(threads: Int, capacity: Int) throws(SystemError) {
        shared = Shared(event: try EventFD())
        self.capacity = max(capacity, 1)
        for index in 0..<max(threads, 1) {
            do throws(SystemError) {
                self.threads.append(try OSThread.spawn(name: "disk\(index)") { [shared] in Self.serve(shared) })
            } catch {
                shutdown()
                throw error
            }
        }
    }

    deinit {
        shutdown()
    }

    public func enqueue(_ operation: DiskEngineOperation) throws(SystemError) {
        staged.append(operation)
    }

    public func submit() throws(SystemError) {
        guard !staged.isEmpty else { return }
        let batch = staged
        staged.removeAll(keepingCapacity: true)
        shared.work.withLock { queue in queue.operations.append(contentsOf: batch) }
        shared.available.post(batch.count)
    }

    public func reap(into completions: inout [DiskEngineCompletion]) {
        shared.finished.withLock { done in
            completions.append(contentsOf: done)
            done.removeAll(keepingCapacity: true)
        }
    }

    public func shutdown() {
        // One wake-up per thread beyond the queued operations: a thread that finds the queue
        // empty exits, and it can only be empty once every operation was taken.
        shared.available.post(threads.count)
        for thread in threads { thread.join() }
        threads.removeAll()
    }

    private static func serve(_ shared: Shared) {
        while true {
            // Operations queued before a shutdown still run, so their buffers are released
            // only after the kernel is done with them.
            shared.available.wait()
            guard let operation = shared.work.withLock({ $0.take() }) else { return }
            let result = perform(operation.kind)
            shared.finished.withLock { $0.append(DiskEngineCompletion(id: operation.id, result: result)) }
            shared.event.signal()
        }
    }

    /// Runs one operation; bytes or −errno.
    static func perform(_ kind: DiskEngineOperation.Kind) -> Int {
        while true {
            let result: Int
            switch kind {
            case .read(let descriptor, let offset, let buffers):
                result = buffers.withUnsafeIOVectors { base, count in
                    cdiskio_preadv(descriptor, base, Int32(count), Int64(offset))
                }
            case .write(let descriptor, let offset, let buffers, let dataSync):
                result = buffers.withUnsafeIOVectors { base, count in
                    cdiskio_pwritev(descriptor, base, Int32(count), Int64(offset), dataSync ? 1 : 0)
                }
            case .dataSync(let descriptor):
                result = fdatasync(descriptor) == 0 ? 0 : -Int(Errno.current.rawValue)
            case .punchHole(let descriptor, let offset, let length):
                result = Int(cdiskio_punch_hole(descriptor, Int64(offset), Int64(length)))
            }
            if result == -Int(EINTR) { continue }
            return result
        }
    }
}
