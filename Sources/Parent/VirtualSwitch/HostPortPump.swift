import Glibc
import LinuxSupport
import NetworkProtocol
import Synchronization

/// The thread that connects a host endpoint (TAP or packet socket) to its switch port: frames
/// the endpoint reads go into the switch, frames queued for the port are written out. It
/// sleeps in poll(2) on the endpoint, the port's ready event and its stop event, with a
/// deadline so it never waits unboundedly. Threads that write to the endpoint directly (a NIC's
/// channel worker, `VirtualSwitch.setDirectSink`) also read it right after, through `pickup`, so
/// a reply the host queued during the write is switched without waking this thread.
public final class HostPortPump: Sendable {
    private let thread: StoppableThread
    private let statistics: Statistics
    private let reader: HostPortReader
    private let writer: HostPortWriter

    /// Counts of what the pump could not pass on.
    final class Statistics: Sendable {
        let unusableReads = Atomic<UInt64>(0)
        let ringReads = Atomic<UInt64>(0)
        let blockedWrites = Atomic<UInt64>(0)
        let failures = Atomic<UInt64>(0)
        /// Of `failures`, the reads' (the pump pauses on those, not on a writer's).
        let readFailures = Atomic<UInt64>(0)
    }

    /// Frames read that the switch could not take (odd virtio headers, runts).
    public var unusableReads: UInt64 { statistics.unusableReads.load(ordering: .relaxed) }
    /// Frames dropped because the endpoint would block.
    public var blockedWrites: UInt64 { statistics.blockedWrites.load(ordering: .relaxed) }
    /// Frames read through the reader's io_uring runs (`FrameReadRing`), not by a plain read.
    public var ringReads: UInt64 { statistics.ringReads.load(ordering: .relaxed) }
    /// Reads or writes that failed with an error other than EAGAIN.
    public var failures: UInt64 { statistics.failures.load(ordering: .relaxed) }

    /// Most frames moved per direction before the pump looks at the other direction.
    public static let batch = 64

    public init(endpoint: VirtioFrameEndpoint, port: SwitchPortID, ready: EventFD, switch virtualSwitch: VirtualSwitch,
                name: String) throws(SystemError) {
        let statistics = Statistics()
        self.statistics = statistics
        let reader = HostPortReader(endpoint: endpoint, port: port, switch: virtualSwitch, statistics: statistics)
        self.reader = reader
        let writer = HostPortWriter(endpoint: endpoint, statistics: statistics)
        self.writer = writer
        thread = try StoppableThread(name: name) { stop in
            // Whether the last round wrote a full batch: more may wait, so the next round only
            // looks at the descriptors (stop, the endpoint) and does not sleep.
            var busy = false
            while true {
                let readable: [Bool]
                do throws(SystemError) {
                    readable = try Poll.wait(on: [endpoint.descriptor.rawValue, ready.rawValue, stop.rawValue],
                                             timeoutMilliseconds: busy ? 0 : 100)
                } catch {
                    statistics.failures.add(1, ordering: .relaxed)
                    return
                }
                if readable[2] { return }
                if readable[0] {
                    let failures = statistics.readFailures.load(ordering: .relaxed)
                    if reader.forward(waiting: true) == 0, statistics.readFailures.load(ordering: .relaxed) != failures {
                        // An endpoint whose every read fails (a TAP whose interface was deleted:
                        // poll reports its error for good) is read again only after a pause,
                        // not in a loop that holds a processor and takes the switch's lock.
                        do throws(SystemError) {
                            if try Poll.wait(on: [stop.rawValue], timeoutMilliseconds: 100).first == true { return }
                        } catch {
                            return
                        }
                    }
                }
                if readable[1] { _ = ready.consume() }
                // One batch of the port's queue a round, whether or not the event fired (a batch
                // limit may have left frames behind): children that queue frames for the host
                // faster than the endpoint takes them must not keep the pump from reading the
                // endpoint (every child's traffic from the host), nor from its stop request.
                let frames = virtualSwitch.receive(for: port, limit: Self.batch)
                if !frames.isEmpty {
                    // What the endpoint would not take is dropped: the pump is the last writer.
                    let taken = writer.write(frames[...], to: endpoint)
                    statistics.blockedWrites.add(UInt64(frames.count - taken), ordering: .relaxed)
                    // Direct writers queued behind these meanwhile; they may write again once
                    // the queue is empty.
                    virtualSwitch.finishedWriting(for: port)
                }
                busy = frames.count == Self.batch
            }
        }
    }

    /// A sink that writes frames to `endpoint` from the switching thread (`VirtualSwitch.setDirectSink`),
    /// a run of them in one system call, counting what it could not write with this pump's
    /// figures (`write(_:to:)`).
    public func directSink(for endpoint: VirtioFrameEndpoint) -> VirtualSwitch.DirectSink {
        let writer = writer
        return { frames in writer.write(frames, to: endpoint) }
    }

    /// The pickup to pass with `directSink` (`VirtualSwitch.setDirectSink(_:pickup:for:)`): one
    /// batch of what the endpoint has to read, switched on the calling thread, unless this pump
    /// (or another writer) is reading it at that moment.
    public var pickup: VirtualSwitch.DirectPickup {
        // Weak: the switch holds the pickup, and the reader holds the switch.
        { [weak reader] in _ = reader?.forward(waiting: false) }
    }

    /// Stops the pump and waits for it.
    public func stop() { thread.stop() }
}

/// Reads a host endpoint into its switch port, one batch at a time, from whichever thread
/// calls: the pump, or a thread that has just written to the endpoint (`HostPortPump.pickup`).
///
/// One reader at a time, which keeps the frames in the order the endpoint gave them: a batch
/// is read and switched under `state`'s lock. The lock is held across I/O only in this narrow
/// sense: every read is non-blocking (the endpoint's descriptor is O_NONBLOCK, the ring's reads
/// RWF_NOWAIT), at most `batch` of them, and a pickup never waits for the lock (it leaves the
/// frames to whoever holds it).
///
/// A batch's first frame is read with one plain `read`, so an endpoint with nothing waiting
/// costs one system call, as before; the rest, if there is a rest, come through a
/// `FrameReadRing`, a run of reads in one submission. A run is twice the last one while
/// every read of that one found a frame, and one more than the last one found otherwise, so
/// that a steady stream is read in runs of up to a batch, a trickle wastes one empty read a
/// run, and a stream that stops wastes at most the run that finds its end (at most twice the
/// last full run). A batch is at most `batch` reads, whatever they found.
final class HostPortReader: Sendable {
    private let endpoint: VirtioFrameEndpoint
    private let port: SwitchPortID
    private let virtualSwitch: VirtualSwitch
    private let statistics: HostPortPump.Statistics
    private let state: Mutex<State>

    /// What the reader keeps between batches, under its lock.
    private struct State: ~Copyable {
        /// Scratch space for plain reads.
        var buffer: [UInt8]
        /// The ring; `nil` before it is made, after a refused submission broke it (the next
        /// batch makes another), or for good where io_uring is refused (`ringRefused`).
        var ring: FrameReadRing?
        var ringRefused = false
        /// Reads the next run through the ring asks for.
        var run = 1
    }

    init(endpoint: VirtioFrameEndpoint, port: SwitchPortID, switch virtualSwitch: VirtualSwitch,
         statistics: HostPortPump.Statistics) {
        self.endpoint = endpoint
        self.port = port
        self.virtualSwitch = virtualSwitch
        self.statistics = statistics
        state = Mutex(State(buffer: [UInt8](repeating: 0, count: endpoint.readSize)))
    }

    /// Reads up to one batch and switches it.
    /// - Parameter waiting: wait for another reader to finish (the pump) rather than return.
    /// - Returns: the frames switched, or `nil` if another reader held the endpoint.
    func forward(waiting: Bool) -> Int? {
        waiting ? state.withLock { readBatch(&$0) } : state.withLockIfAvailable { readBatch(&$0) }
    }

    private func readBatch(_ state: inout State) -> Int {
        var frames: [NetworkFrame] = []
        // Bounded by reads, not frames: a stream of unusable frames ends the batch too.
        var reads = 0
        reading: while reads < HostPortPump.batch {
            if !frames.isEmpty, let ring = readRing(&state) {
                guard readRun(through: ring, into: &frames, reads: &reads, state: &state) else { break reading }
                continue
            }
            reads += 1
            do throws(SystemError) {
                switch try endpoint.read(into: &state.buffer) {
                case .frame(let frame): frames.append(frame)
                case .empty: break reading
                case .unusable: statistics.unusableReads.add(1, ordering: .relaxed)
                }
            } catch {
                statistics.failures.add(1, ordering: .relaxed)
                statistics.readFailures.add(1, ordering: .relaxed)
                break reading
            }
        }
        let count = frames.count
        if count > 0 { virtualSwitch.send(draining: &frames, from: port) }
        return count
    }

    /// The ring, made on first use; `nil` where io_uring is refused.
    private func readRing(_ state: inout State) -> FrameReadRing? {
        if state.ring == nil, !state.ringRefused {
            state.ring = FrameReadRing(registering: endpoint.descriptor.rawValue, bufferSize: endpoint.readSize)
            state.ringRefused = state.ring == nil
        }
        return state.ring
    }

    /// Reads one run through `ring` into `frames`, counting its reads in `reads`.
    /// - Returns: whether every read of the run found a frame (the batch may go on).
    private func readRun(through ring: FrameReadRing, into frames: inout [NetworkFrame], reads: inout Int,
                         state: inout State) -> Bool {
        let asked = min(state.run, HostPortPump.batch - reads, FrameReadRing.entries)
        var found = 0
        var ended = false
        let submitted = ring.read(asked, from: endpoint) { result in
            switch result {
            case .read(let bytes, let count):
                found += 1
                switch endpoint.frame(in: bytes, count: count) {
                case .frame(let frame): frames.append(frame)
                case .empty, .unusable: statistics.unusableReads.add(1, ordering: .relaxed)
                }
            case .empty:
                ended = true
            case .failed(let code):
                statistics.failures.add(1, ordering: .relaxed)
                statistics.readFailures.add(1, ordering: .relaxed)
                ended = true
                // An endpoint the ring cannot read at all (no RWF_NOWAIT, a restriction) is
                // read the plain way from now on; any other failure ends only this batch.
                if code == EOPNOTSUPP || code == EINVAL || code == EACCES || code == EBADF { state.ringRefused = true }
            }
        }
        reads += asked
        statistics.ringReads.add(UInt64(found), ordering: .relaxed)
        guard submitted, !state.ringRefused else {
            // A submission the kernel refused (short of memory) broke the ring: a new one is
            // made for the next batch, unless io_uring refuses that too.
            state.ring = nil
            return false
        }
        if found < asked {
            state.run = found + 1
        } else if asked == state.run {
            state.run = min(2 * asked, HostPortPump.batch)
        }  // else the batch's end cut the run short: the next starts where this one was meant to.
        return !ended
    }
}

/// Writes frames to a host endpoint for whichever thread calls (the pump, or a thread switching
/// frames to the port directly), a run of them in one system call where io_uring is available
/// (`FrameWriteRing`, one of a small pool per endpoint, so writers never wait for each other),
/// one `writev` each otherwise and for a single frame.
public final class HostPortWriter: Sendable {
    private let statistics: HostPortPump.Statistics
    private let rings: FrameWriteRings

    /// A writer for `endpoint` (which its rings register; it writes to no other in practice).
    init(endpoint: VirtioFrameEndpoint, statistics: HostPortPump.Statistics) {
        self.statistics = statistics
        rings = FrameWriteRings(descriptor: endpoint.descriptor.rawValue)
    }

    /// Writes `frames` in order and returns how many it took from the front: written, or
    /// dropped and counted. Frames that would block at the end of the run are left to the
    /// caller; one that would block before a frame that was written is dropped and counted
    /// (`blockedWrites`), and so is one that fails (`failures`), so the frames that go out
    /// keep their order.
    func write(_ frames: ArraySlice<NetworkFrame>, to endpoint: VirtioFrameEndpoint) -> Int {
        // One frame (an echo request, an ARP): a plain writev, no ring to take.
        guard frames.count > 1 else { return writeEach(frames, to: endpoint) }
        return rings.withRing { ring in
            guard let ring else { return writeEach(frames, to: endpoint) }
            var outcomes: [FrameWriteRing.Outcome] = []
            outcomes.reserveCapacity(frames.count)
            ring.write(frames, to: endpoint, outcomes: &outcomes)
            let (taken, blocked, failed) = Self.taken(outcomes)
            if blocked > 0 { statistics.blockedWrites.add(UInt64(blocked), ordering: .relaxed) }
            if failed > 0 { statistics.failures.add(UInt64(failed), ordering: .relaxed) }
            return taken
        }
    }

    /// How many frames of a run a batch of outcomes took from the front: up to the last one
    /// written, and the failures right after it; with how many of those would have blocked
    /// and how many failed.
    public static func taken(_ outcomes: [FrameWriteRing.Outcome]) -> (taken: Int, blocked: Int, failed: Int) {
        var taken = (outcomes.lastIndex(of: .written) ?? -1) + 1
        var blocked = 0
        var failed = 0
        for outcome in outcomes[..<taken] {
            switch outcome {
            case .written: break
            case .wouldBlock: blocked += 1
            case .failed: failed += 1
            }
        }
        while taken < outcomes.count, outcomes[taken] != .wouldBlock {
            failed += 1
            taken += 1
        }
        return (taken, blocked, failed)
    }

    /// Writes frames one `writev` each, up to the first that would block.
    private func writeEach(_ frames: ArraySlice<NetworkFrame>, to endpoint: VirtioFrameEndpoint) -> Int {
        var taken = 0
        for frame in frames {
            do throws(SystemError) {
                guard try endpoint.write(frame) else { return taken }
            } catch {
                statistics.failures.add(1, ordering: .relaxed)
            }
            taken += 1
        }
        return taken
    }
}
