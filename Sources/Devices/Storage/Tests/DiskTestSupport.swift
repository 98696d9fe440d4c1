import DiskBackend
import Glibc
import GuestMemory
import LinuxSupport
import SystemPackage

/// A directory under `base` removed with everything in it when released.
final class TemporaryDirectory {
    let path: String

    init(base: String = "/tmp") throws {
        var template = Array("\(base)/hv-storage-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw SystemError.current("create a temporary directory in \(base)")
        }
        path = String(cString: made)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    deinit {
        if let directory = opendir(path) {
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != ".", name != ".." { unlink("\(path)/\(name)") }
            }
            closedir(directory)
        }
        rmdir(path)
    }
}

/// Whether a file system accepts O_DIRECT (some, such as older tmpfs, refuse it at open).
func directIOSupported(in base: String) -> Bool {
    guard let directory = try? TemporaryDirectory(base: base),
          let image = try? DiskImage.create(at: directory.file("probe.img"), size: 1 << 20),
          (try? DiskImage(path: image.path, direct: true)) != nil
    else { return false }
    return true
}

/// A read of an empty pipe, which stays in the kernel until something is written to it, as a
/// read of a file whose server stopped answering would.
final class PendingPipeRead {
    private let reader: Int32
    private let writer: Int32

    /// A weak view of guest memory.
    final class Watch {
        weak var value: GuestMemory?
    }

    init() throws {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw SystemError.current("create a pipe") }
        (reader, writer) = (ends[0], ends[1])
    }

    deinit {
        close(reader)
        close(writer)
    }

    /// Starts the read into a page of new guest memory on a new ring, then releases the ring
    /// with the read in flight. Only the read's buffers hold the memory afterwards.
    func releaseRing(singleIssuer: Bool) throws -> Watch {
        let watch = Watch()
        let memory = try GuestMemory.create(name: "late-test", size: 4 * 4096)
        watch.value = memory
        let buffers = try memory.ioVectors([GuestMemorySegment(pageNumber: 1, offset: 0, length: 4096)])
        let engine = try IOURingEngine(capacity: 4, singleIssuer: singleIssuer)
        try engine.enqueue(DiskEngineOperation(id: 1, kind: .read(descriptor: reader, offset: .max, buffers: buffers)))
        try engine.submit()
        return watch
    }

    /// Writes a page into the pipe, so the read completes; returns what write(2) returned.
    func land() -> Int {
        let data = pattern(count: 4096, seed: 9)
        return write(writer, data, data.count)
    }
}

/// A recognisable byte for `offset` of a test pattern.
func patternByte(_ offset: Int, seed: UInt8) -> UInt8 { UInt8(truncatingIfNeeded: offset &* 7 &+ offset >> 9 &+ Int(seed)) }

func pattern(count: Int, seed: UInt8) -> [UInt8] { (0..<count).map { patternByte($0, seed: seed) } }

extension DiskQueue {
    /// Submits, commits and waits for this one request's completion (others are returned too).
    func run(_ request: DiskRequest) throws -> [DiskCompletion] {
        try submit(request)
        var all: [DiskCompletion] = []
        while !all.contains(where: { $0.tag == request.tag }) {
            let batch = try waitForCompletions(timeoutMilliseconds: 10_000)
            if batch.isEmpty, inFlight > 0 { throw SystemError("wait for disk request \(request.tag)", errno: .timedOut) }
            all += batch
        }
        return all
    }

    /// Runs one request and returns its result.
    func result(of request: DiskRequest) throws -> Result<Int, SystemError> {
        let completions = try run(request)
        guard let mine = completions.first(where: { $0.tag == request.tag }) else {
            throw SystemError("find disk request \(request.tag)", errno: .noData)
        }
        return mine.result
    }
}

/// Logical time shared by a recording engine and its test.
final class LogicalClock {
    private(set) var now = 0
    func tick() -> Int {
        now += 1
        return now
    }
}

/// An engine that performs nothing: it records each operation and completes it only when the
/// test says so, so that tests choose the order in which operations finish.
final class RecordingEngine: DiskIOEngine, @unchecked Sendable {
    struct Record {
        var operation: DiskEngineOperation
        var enqueued: Int
        var completed: Int?
    }

    let completionEvent: EventFD
    let capacity: Int
    let clock: LogicalClock
    private(set) var records: [UInt64: Record] = [:]
    private(set) var order: [UInt64] = []
    private var finished: [DiskEngineCompletion] = []
    /// Results to use instead of full success, by operation kind.
    var dataSyncResult = 0
    /// What the next inline transfers report in place of the kernel (bytes or −errno), in
    /// order; with none left, the system calls answer. A scripted answer moves no data.
    var inlineAnswers: [Int] = []
    /// The inline transfers asked for, scripted or not: (offset, bytes, write, mayBlock).
    private(set) var inlineAttempts: [(offset: UInt64, bytes: Int, write: Bool, mayBlock: Bool)] = []

    init(capacity: Int = 64, clock: LogicalClock = LogicalClock()) throws {
        completionEvent = try EventFD()
        self.capacity = capacity
        self.clock = clock
    }

    func enqueue(_ operation: DiskEngineOperation) throws(SystemError) {
        records[operation.id] = Record(operation: operation, enqueued: clock.tick())
        order.append(operation.id)
    }

    /// Commits: operations enqueued before each `submit()` (what that commit handed over).
    private(set) var commits: [Int] = []

    func submit() throws(SystemError) {
        commits.append(order.count)
    }

    func reap(into completions: inout [DiskEngineCompletion]) {
        completions += finished
        finished.removeAll()
    }

    func shutdown() {}

    func transferInline(descriptor: Int32, offset: UInt64, buffers: GuestIOVectors, write: Bool, mayBlock: Bool) -> Int {
        inlineAttempts.append((offset, buffers.byteCount, write, mayBlock))
        guard inlineAnswers.isEmpty else { return inlineAnswers.removeFirst() }
        return InlineTransfer.attempt(descriptor: descriptor, offset: offset, buffers: buffers, write: write, mayBlock: mayBlock)
    }

    /// Operations enqueued and not yet completed.
    var pending: [UInt64] { order.filter { records[$0]?.completed == nil } }

    /// Completes `id` with `result` (default: every byte, or `dataSyncResult` for a sync).
    func complete(_ id: UInt64, result: Int? = nil) {
        guard var record = records[id], record.completed == nil else { return }
        record.completed = clock.tick()
        records[id] = record
        let value: Int
        switch record.operation.kind {
        case .read(_, _, let buffers), .write(_, _, let buffers, _): value = result ?? buffers.byteCount
        case .dataSync: value = result ?? dataSyncResult
        case .punchHole: value = result ?? 0
        }
        finished.append(DiskEngineCompletion(id: id, result: value))
        completionEvent.signal()
    }

    func isDataSync(_ id: UInt64) -> Bool {
        if case .dataSync = records[id]?.operation.kind { return true }
        return false
    }
}
