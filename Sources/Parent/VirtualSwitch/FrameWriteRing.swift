import CDiskIO
import Glibc
import LinuxSupport
import NetworkProtocol
import Synchronization

/// An io_uring whose entries move frames to or from one host endpoint (a TAP or a packet
/// socket), every one with RWF_NOWAIT: each completes during the submission that issues it, so
/// when `submit` returns the kernel holds no pointer into the buffers its entries named. The
/// part `FrameWriteRing` and `FrameReadRing` share.
final class EndpointRing {
    private let ring: UnsafeMutablePointer<cdiskio_ring>
    /// The descriptor registered as the ring's fixed file, if any.
    private let registered: Int32?
    /// Whether a submission failed, after which the ring was torn down and must not be used.
    private(set) var isBroken = false

    /// A ring of at least `entries` entries, or `nil` where io_uring is unavailable or refused.
    /// - Parameter descriptor: the endpoint, registered with the ring (IORING_REGISTER_FILES) so
    ///   that its entries skip the descriptor lookup and reference count the kernel otherwise
    ///   takes for each; entries for another descriptor look it up. The ring holds the file
    ///   open until it is destroyed.
    init?(entries: Int, registering descriptor: Int32?) {
        ring = .allocate(capacity: 1)
        guard cdiskio_ring_init(ring, UInt32(entries), 0) == 0 else {
            ring.deallocate()
            return nil
        }
        // Before the ring is enabled: its restrictions refuse registrations after. A kernel that
        // refuses it leaves the ring naming the endpoint by descriptor.
        if let descriptor, cdiskio_ring_register_file(ring, descriptor) == 0 {
            registered = descriptor
        } else {
            registered = nil
        }
        guard cdiskio_ring_enable(ring) == 0, ring.pointee.sq_entries >= UInt32(entries) else {
            cdiskio_ring_destroy(ring)
            ring.deallocate()
            return nil
        }
    }

    deinit {
        cdiskio_ring_destroy(ring)
        ring.deallocate()
    }

    /// Prepares a write of `count` vectors to `endpoint` as entry `slot`.
    func prepareWrite(to endpoint: VirtioFrameEndpoint, vectors: UnsafePointer<iovec>, count: Int, slot: Int) {
        let (descriptor, fixed) = target(endpoint)
        _ = cdiskio_ring_prep_write_nowait(ring, descriptor, fixed, vectors, UInt32(count), UInt64(slot))
    }

    /// Prepares a read from `endpoint` into `count` vectors as entry `slot`.
    func prepareRead(from endpoint: VirtioFrameEndpoint, vectors: UnsafePointer<iovec>, count: Int, slot: Int) {
        let (descriptor, fixed) = target(endpoint)
        _ = cdiskio_ring_prep_read_nowait(ring, descriptor, fixed, vectors, UInt32(count), UInt64(slot))
    }

    /// The descriptor, or the fixed-file index, an entry names `endpoint` by.
    private func target(_ endpoint: VirtioFrameEndpoint) -> (descriptor: Int32, fixed: Int32) {
        registered == endpoint.descriptor.rawValue ? (0, 1) : (endpoint.descriptor.rawValue, 0)
    }

    /// Submits the `count` entries prepared (slots 0 to `count` - 1) and calls `completed` with
    /// each slot and its result (bytes moved, or -errno), in the order they complete.
    /// - Returns: `false` if the kernel refused the submission (short of memory): the ring is
    ///   then torn down, which drops the entries it never read, so nothing touches their
    ///   buffers later; it is broken from then on.
    func submit(_ count: Int, _ completed: (_ slot: Int, _ result: Int32) -> Void) -> Bool {
        var missing = count
        var waitFor: UInt32 = 0
        while missing > 0 {
            guard cdiskio_ring_submit(ring, waitFor) >= 0 else {
                isBroken = true
                cdiskio_ring_destroy(ring)
                return false
            }
            var id: UInt64 = 0
            var value: Int32 = 0
            while cdiskio_ring_next_completion(ring, &id, &value) == 1 {
                guard id < UInt64(count) else { continue }
                completed(Int(id), value)
                missing -= 1
            }
            // Every entry completes in its submission (RWF_NOWAIT); should one not have, wait
            // for it here, while the caller still holds its buffers.
            waitFor = UInt32(max(missing, 0))
        }
        return true
    }
}

/// Writes a run of frames to a host endpoint with one system call: an io_uring WRITEV per
/// frame, each with RWF_NOWAIT, submitted together (`EndpointRing`). The kernel still builds
/// and delivers one packet per frame, as it does for a `writev`; what the batch saves is the
/// system call around each of them (entry and exit, the descriptor lookup, the parent's seccomp
/// filter), about a fifth of a host TAP write of 1514 bytes here (Docs/network.md, "Writing to
/// the host").
public final class FrameWriteRing {
    /// Frames per submission.
    public static let entries = 64

    /// What became of one frame.
    public enum Outcome: Equatable, Sendable {
        case written
        /// The endpoint would block; the frame was not written.
        case wouldBlock
        /// The write failed with this errno; the frame was not written.
        case failed(Int32)
    }

    private let ring: EndpointRing
    /// Two per entry: the virtio-net header, then the frame.
    private let vectors: UnsafeMutablePointer<iovec>
    /// Each entry's header, `VirtioNetHeader.size` bytes apart.
    private let headers: UnsafeMutableRawPointer

    /// A ring, or `nil` where io_uring is unavailable or refused (the caller writes frame by frame).
    /// - Parameter descriptor: the endpoint this ring writes to, registered with the ring
    ///   (`EndpointRing`); it stays open until the ring is destroyed, with its pool, when the
    ///   switch's host side stops (`HostPortPump`'s writer).
    public init?(registering descriptor: Int32? = nil) {
        guard let ring = EndpointRing(entries: Self.entries, registering: descriptor) else { return nil }
        self.ring = ring
        vectors = .allocate(capacity: 2 * Self.entries)
        vectors.initialize(repeating: iovec(), count: 2 * Self.entries)
        headers = .allocate(byteCount: Self.entries * VirtioNetHeader.size, alignment: 16)
        headers.initializeMemory(as: UInt8.self, repeating: 0, count: Self.entries * VirtioNetHeader.size)
    }

    deinit {
        vectors.deallocate()
        headers.deallocate()
    }

    /// Whether a submission failed, after which the ring was torn down and must not be used.
    public var isBroken: Bool { ring.isBroken }

    /// Writes `frames` to `endpoint`, in order, `entries` at a time, and appends one outcome per
    /// frame to `outcomes`. Frames after a failed submission (the kernel short of memory) are
    /// reported as `wouldBlock`, and the ring is broken from then on.
    public func write(_ frames: ArraySlice<NetworkFrame>, to endpoint: VirtioFrameEndpoint, outcomes: inout [Outcome]) {
        var start = frames.startIndex
        while start < frames.endIndex {
            let end = min(start + Self.entries, frames.endIndex)
            if ring.isBroken {
                outcomes.append(contentsOf: repeatElement(.wouldBlock, count: end - start))
            } else {
                submit(frames[start..<end], to: endpoint, outcomes: &outcomes)
            }
            start = end
        }
    }

    /// One submission of at most `entries` frames.
    private func submit(_ chunk: ArraySlice<NetworkFrame>, to endpoint: VirtioFrameEndpoint, outcomes: inout [Outcome]) {
        let base = outcomes.count
        outcomes.append(contentsOf: repeatElement(.wouldBlock, count: chunk.count))
        let headerSize = min(endpoint.headerSize, VirtioNetHeader.size)
        chunk.withUnsafeBufferPointer { frames in
            pinning(frames, from: 0) {
                for slot in frames.indices {
                    let header = headers + slot * VirtioNetHeader.size
                    // SAFETY: slot < entries, so the slot's `VirtioNetHeader.size` bytes are
                    // inside `headers` (ours, alive), and at most that many are written.
                    if VirtioFrameEndpoint.needsHeader(frames[slot]) {
                        endpoint.header(for: frames[slot]).withUnsafeBytes { bytes in
                            if let source = bytes.baseAddress { header.copyMemory(from: source, byteCount: min(bytes.count, headerSize)) }
                        }
                    } else {
                        header.initializeMemory(as: UInt8.self, repeating: 0, count: headerSize)
                    }
                    // SAFETY: `vectors` has two per entry and slot < entries; the frame's vector
                    // was filled by `pinning`, whose buffers stay alive until this closure
                    // returns, and the ring has room for `entries` (checked in init, and every
                    // completion is reaped before the next submission).
                    vectors[2 * slot] = iovec(iov_base: header, iov_len: headerSize)
                    ring.prepareWrite(to: endpoint, vectors: vectors + 2 * slot, count: 2, slot: slot)
                }
                _ = ring.submit(frames.count) { slot, value in
                    outcomes[base + slot] = value >= 0 ? .written
                        : (value == -EAGAIN || value == -ENOBUFS) ? .wouldBlock : .failed(-value)
                }
            }
        }
    }

    /// Runs `body` with the bytes of every frame of `frames` from `index` on pinned, its
    /// vector (the odd slot of its entry) pointing at them.
    private func pinning(_ frames: UnsafeBufferPointer<NetworkFrame>, from index: Int, _ body: () -> Void) {
        guard index < frames.count else { return body() }
        frames[index].bytes.withUnsafeBytes { bytes in
            // SAFETY: the pointer is used only by writes submitted and completed inside `body`,
            // which runs inside this closure; writev only reads through it.
            vectors[2 * index + 1] = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
            pinning(frames, from: index + 1, body)
        }
    }
}

/// Rings for the threads that write to one host endpoint directly (`HostPortPump.directSink`):
/// each takes one for a batch and gives it back, so no lock is held while writing. At most
/// `limit` exist; a thread that finds none free writes frame by frame, as without io_uring.
final class FrameWriteRings: Sendable {
    private struct State {
        var idle: [UnsafeSendableRing] = []
        var made = 0
        var unavailable = false
    }

    /// A ring in the pool: only the thread that took it uses it until it gives it back.
    private struct UnsafeSendableRing: @unchecked Sendable {
        let ring: FrameWriteRing
    }

    private enum Take { case ring(UnsafeSendableRing), make, none }

    private let state = Mutex(State())
    let limit: Int
    /// The endpoint's descriptor, registered with each ring.
    let descriptor: Int32?

    init(descriptor: Int32? = nil, limit: Int = 4) {
        self.descriptor = descriptor
        self.limit = limit
    }

    /// Runs `body` with a ring of this pool, or with `nil` if none is free (or io_uring is
    /// unavailable here).
    func withRing<R>(_ body: (FrameWriteRing?) -> R) -> R {
        let take: Take = state.withLock { state in
            if let ring = state.idle.popLast() { return .ring(ring) }
            guard !state.unavailable, state.made < limit else { return .none }
            state.made += 1
            return .make
        }
        let taken: FrameWriteRing?
        switch take {
        case .ring(let held): taken = held.ring
        case .make:
            taken = FrameWriteRing(registering: descriptor)
            if taken == nil { state.withLock { $0.unavailable = true; $0.made -= 1 } }
        case .none: taken = nil
        }
        let result = body(taken)
        if let taken {
            state.withLock { state in
                if taken.isBroken { state.made -= 1 } else { state.idle.append(UnsafeSendableRing(ring: taken)) }
            }
        }
        return result
    }
}
