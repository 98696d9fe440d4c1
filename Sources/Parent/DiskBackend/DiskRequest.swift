import GuestMemory
import LinuxSupport

/// One request of a disk queue.
public struct DiskRequest: Sendable {
    public enum Operation: Sendable {
        /// Read `buffers.byteCount` bytes at `offset` into guest memory.
        case read(offset: UInt64, buffers: GuestIOVectors)
        /// Write `buffers.byteCount` bytes at `offset`; with FUA they are durable (RWF_DSYNC)
        /// before the request completes.
        case write(offset: UInt64, buffers: GuestIOVectors, forceUnitAccess: Bool)
        /// Completes once every write that completed before it was submitted is durable.
        case flush
        /// Deallocates the ranges (punch hole, size kept); they read as zero afterwards.
        case discard([(offset: UInt64, length: UInt64)])
    }

    /// The caller's identifier, returned in the completion.
    public var tag: UInt64
    public var operation: Operation

    public init(tag: UInt64, operation: Operation) {
        self.tag = tag
        self.operation = operation
    }
}

/// How a request ended: the bytes moved (0 for flush and discard) or the failed system call.
public struct DiskCompletion: Sendable {
    public var tag: UInt64
    public var result: Result<Int, SystemError>

    public init(tag: UInt64, result: Result<Int, SystemError>) {
        self.tag = tag
        self.result = result
    }
}

/// Why a request was not accepted.
public enum DiskQueueError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `depth` requests are in flight; submit again after a completion.
    case full
    /// The request does not fit the image or its configuration; the string says why.
    case invalid(String)
    /// The engine failed to take the request.
    case system(SystemError)

    public var description: String {
        switch self {
        case .full: "the disk queue is full"
        case .invalid(let reason): "invalid disk request: \(reason)"
        case .system(let error): "\(error)"
        }
    }
}
