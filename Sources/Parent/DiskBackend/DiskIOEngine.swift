import CDiskIO
import GuestMemory
import LinuxSupport

/// One system-level operation for an engine.
public struct DiskEngineOperation: Sendable {
    public enum Kind: Sendable {
        case read(descriptor: Int32, offset: UInt64, buffers: GuestIOVectors)
        /// With `dataSync`, the write is durable when it completes (RWF_DSYNC).
        case write(descriptor: Int32, offset: UInt64, buffers: GuestIOVectors, dataSync: Bool)
        /// fdatasync.
        case dataSync(descriptor: Int32)
        /// fallocate(PUNCH_HOLE | KEEP_SIZE).
        case punchHole(descriptor: Int32, offset: UInt64, length: UInt64)
    }

    /// Chosen by the queue; returned in the completion.
    public var id: UInt64
    public var kind: Kind

    public init(id: UInt64, kind: Kind) {
        self.id = id
        self.kind = kind
    }
}

/// The result of one engine operation: bytes (≥ 0) or −errno.
public struct DiskEngineCompletion: Sendable, Equatable {
    public var id: UInt64
    public var result: Int

    public init(id: UInt64, result: Int) {
        self.id = id
        self.result = result
    }
}

/// Carries out operations asynchronously. One thread (the channel worker owning the queue)
/// calls every method; completions may be produced elsewhere, and `completionEvent` becomes
/// readable when some may be waiting, so that thread can sleep on it beside its ring doorbell.
public protocol DiskIOEngine: AnyObject {
    /// Readable when completions may be waiting; `reap` consumes them (the caller clears the
    /// event before reaping, so a completion posted meanwhile signals it again).
    var completionEvent: EventFD { get }
    /// The most operations the engine holds at once.
    var capacity: Int { get }
    /// Queues an operation; it starts at the next `submit()` at the latest. The engine keeps the
    /// operation's buffers alive until its completion is reaped.
    func enqueue(_ operation: DiskEngineOperation) throws(SystemError)
    /// Starts every queued operation.
    func submit() throws(SystemError)
    /// Appends the completions available now.
    func reap(into completions: inout [DiskEngineCompletion])
    /// Stops the engine after the operations in flight finish.
    func shutdown()
    /// One attempt at a buffered transfer on the calling thread, for the queue's inline path:
    /// with `RWF_NOWAIT` (only what the page cache can take or give at once), or a plain
    /// `pwritev2` where `mayBlock` (writes only; a read is always non-blocking). Returns the
    /// bytes that moved, possibly short, or −errno.
    /// Every engine uses the system calls (the default); tests may answer for the kernel.
    func transferInline(descriptor: Int32, offset: UInt64, buffers: GuestIOVectors, write: Bool, mayBlock: Bool) -> Int
}

extension DiskIOEngine {
    public func transferInline(descriptor: Int32, offset: UInt64, buffers: GuestIOVectors, write: Bool, mayBlock: Bool) -> Int {
        InlineTransfer.attempt(descriptor: descriptor, offset: offset, buffers: buffers, write: write, mayBlock: mayBlock)
    }
}

/// The system calls behind `DiskIOEngine.transferInline`.
public enum InlineTransfer {
    /// `preadv2`/`pwritev2` with `RWF_NOWAIT`, or a plain `pwritev2` for a write that `mayBlock`.
    public static func attempt(descriptor: Int32, offset: UInt64, buffers: GuestIOVectors, write: Bool, mayBlock: Bool) -> Int {
        buffers.withUnsafeIOVectors { base, count in
            if write, mayBlock {
                cdiskio_pwritev(descriptor, base, Int32(count), Int64(offset), 0)
            } else {
                cdiskio_transfer_nowait(descriptor, base, Int32(count), Int64(offset), write ? 1 : 0)
            }
        }
    }
}

/// The engines this module provides.
public enum DiskEngineKind: Hashable, Sendable, CustomStringConvertible {
    /// io_uring: one ring per queue, submissions batched per worker pass, completions read from
    /// shared memory and announced through a registered eventfd.
    case ioURing
    /// io_uring with SINGLE_ISSUER and DEFER_TASKRUN (as fio sets it up): completion work runs
    /// in batches when the owner asks for events; the queue must then be used, and drained,
    /// from one thread only.
    case ioURingSingleIssuer
    /// A pool of threads doing preadv/pwritev2/fdatasync/fallocate.
    case threadPool(threads: Int)

    /// The default, chosen by measurement (Docs/storage.md, "Engines"): io_uring, which matches
    /// fio's io_uring at 32 requests in flight and beats the thread pool 2-4×; the plain ring
    /// rather than the single-issuer one, which measured the same within noise but ties the
    /// queue to one thread.
    public static let `default` = DiskEngineKind.ioURing

    public var description: String {
        switch self {
        case .ioURing: "io_uring"
        case .ioURingSingleIssuer: "io_uring (single issuer)"
        case .threadPool(let threads): "thread pool (\(threads))"
        }
    }

    /// A new engine of this kind for up to `capacity` operations.
    public func makeEngine(capacity: Int) throws(SystemError) -> any DiskIOEngine {
        switch self {
        case .ioURing: try IOURingEngine(capacity: capacity)
        case .ioURingSingleIssuer: try IOURingEngine(capacity: capacity, singleIssuer: true)
        case .threadPool(let threads): try ThreadPoolEngine(threads: threads, capacity: capacity)
        }
    }
}
