import CDiskIO
import Glibc
import LinuxSupport

/// Reads a run of frames from a host endpoint with one system call: an io_uring READV per
/// frame, each with RWF_NOWAIT, submitted together (`EndpointRing`), each into a buffer of its
/// own. The read counterpart of `FrameWriteRing`: the kernel still dequeues and copies one
/// packet per read, and the batch saves the system call around each (Docs/network.md, "Reading
/// from the host").
///
/// A read finding nothing completes at once with -EAGAIN, so reads past the end of what the
/// endpoint holds cost little, but not nothing; `HostPortReader` sizes each run by how the
/// last one ended.
public final class FrameReadRing {
    /// Most reads per submission.
    public static let entries = 64

    /// What one read gave.
    public enum Result {
        /// A read of `count` bytes, the first `bytes.count` of them in `bytes` (valid only
        /// during the call). A frame longer than the buffer is cut short: some kernels report
        /// its whole length then (`count` > `bytes.count`), others only what fits, so the
        /// buffer must hold the largest frame the endpoint can give (`readSize`).
        case read(bytes: UnsafeRawBufferPointer, count: Int)
        /// Nothing was waiting.
        case empty
        /// The read failed with this errno.
        case failed(Int32)
    }

    private let ring: EndpointRing
    /// One per entry, each covering that entry's buffer.
    private let vectors: UnsafeMutablePointer<iovec>
    /// `entries` buffers of `bufferSize` bytes, one after another.
    private let buffers: UnsafeMutableRawPointer
    /// Bytes per buffer: the largest read the endpoint can give.
    public let bufferSize: Int
    /// Each slot's result in the last submission.
    private var results: [Int32]

    /// A ring, or `nil` where io_uring is unavailable or refused (the caller reads frame by frame).
    /// - Parameters:
    ///   - descriptor: the endpoint this ring reads, registered with it (`EndpointRing`).
    ///   - bufferSize: bytes per read (virtio-net header and frame).
    public init?(registering descriptor: Int32?, bufferSize: Int) {
        guard bufferSize > 0, let ring = EndpointRing(entries: Self.entries, registering: descriptor) else { return nil }
        self.ring = ring
        self.bufferSize = bufferSize
        // Left uninitialized: the kernel writes each buffer before any of it is read, and only
        // what a read reported is read. Pages never written are never touched (about 4 MiB of
        // address space at a 64 KiB buffer size, of which a stream of 1514-byte frames touches
        // one page per buffer).
        buffers = .allocate(byteCount: Self.entries * bufferSize, alignment: 64)
        vectors = .allocate(capacity: Self.entries)
        for slot in 0..<Self.entries {
            vectors[slot] = iovec(iov_base: buffers + slot * bufferSize, iov_len: bufferSize)
        }
        results = Array(repeating: 0, count: Self.entries)
    }

    deinit {
        vectors.deallocate()
        buffers.deallocate()
    }

    /// Whether a submission failed, after which the ring was torn down and must not be used.
    public var isBroken: Bool { ring.isBroken }

    /// Reads up to `count` frames (at most `entries`) from `endpoint` in one submission and
    /// gives `body` each slot's result, in the order the reads were issued, which is the order
    /// the endpoint gave its frames.
    /// - Returns: `false` if the submission failed: the ring is broken, and `body` was not
    ///   called (with RWF_NOWAIT every read completes in the submission that issues it, so a
    ///   failed submission is one the kernel refused before any read ran).
    public func read(_ count: Int, from endpoint: VirtioFrameEndpoint, _ body: (Result) -> Void) -> Bool {
        let count = min(max(count, 0), Self.entries)
        guard count > 0, !ring.isBroken else { return !ring.isBroken }
        for slot in 0..<count {
            // SAFETY: slot < entries, and the vector covers that slot's buffer, which this ring
            // owns until deinit; every read completes before `submit` returns.
            ring.prepareRead(from: endpoint, vectors: vectors + slot, count: 1, slot: slot)
        }
        guard ring.submit(count, { slot, value in results[slot] = value }) else { return false }
        for slot in 0..<count {
            let value = results[slot]
            if value >= 0 {
                // SAFETY: the slot's buffer is ours and `bufferSize` long; the kernel wrote the
                // first min(value, bufferSize) bytes of it, and only those are read.
                let bytes = UnsafeRawBufferPointer(start: buffers + slot * bufferSize, count: min(Int(value), bufferSize))
                body(.read(bytes: bytes, count: Int(value)))
            } else if value == -EAGAIN {
                body(.empty)
            } else {
                body(.failed(-value))
            }
        }
        return true
    }
}
