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

    /// Counts of what the pump could not pass on.
    final class Statistics: Sendable {
        let unusableReads = Atomic<UInt64>(0)
        let blockedWrites = Atomic<UInt64>(0)
        let failures = Atomic<UInt64>(0)
    }

    /// Frames read that the switch could not take (odd virtio headers, runts).
    public var unusableReads: UInt64 { statistics.unusableReads.load(ordering: .relaxed) }
    /// Frames dropped because the endpoint would block.
    public var blockedWrites: UInt64 { statistics.blockedWrites.load(ordering: .relaxed) }
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
        thread = try StoppableThread(name: name) { stop in
            while true {
                let readable: [Bool]
                do throws(SystemError) {
                    readable = try Poll.wait(on: [endpoint.descriptor.rawValue, ready.rawValue, stop.rawValue],
                                             timeoutMilliseconds: 100)
                } catch {
                    statistics.failures.add(1, ordering: .relaxed)
                    return
                }
                if readable[2] { return }
                if readable[0] { _ = reader.forward(waiting: true) }
                if readable[1] { _ = ready.consume() }
                // Drain the port's queue whether or not the event fired: a batch limit may have
                // left frames behind on the previous round.
                var frames = virtualSwitch.receive(for: port, limit: Self.batch)
                while !frames.isEmpty {
                    for frame in frames {
                        do throws(SystemError) {
                            if try !endpoint.write(frame) { statistics.blockedWrites.add(1, ordering: .relaxed) }
                        } catch {
                            statistics.failures.add(1, ordering: .relaxed)
                        }
                    }
                    if frames.count < Self.batch { break }
                    frames = virtualSwitch.receive(for: port, limit: Self.batch)
                }
            }
        }
    }

    /// A sink that writes frames to `endpoint` from the switching thread (`VirtualSwitch.setDirectSink`),
    /// counting failures with this pump's: a write that would block returns `false` (the switch
    /// queues the frame for the pump); one that fails is dropped and counted.
    public func directSink(for endpoint: VirtioFrameEndpoint) -> VirtualSwitch.DirectSink {
        let statistics = statistics
        return { frame in
            do throws(SystemError) {
                return try endpoint.write(frame)
            } catch {
                statistics.failures.add(1, ordering: .relaxed)
                return true
            }
        }
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
/// is read and switched under `scratch`'s lock. The lock is held across I/O only in this narrow
/// sense: every read is non-blocking (the endpoint's descriptor is O_NONBLOCK), at most `batch`
/// of them, and a pickup never waits for the lock (it leaves the frames to whoever holds it).
final class HostPortReader: Sendable {
    private let endpoint: VirtioFrameEndpoint
    private let port: SwitchPortID
    private let virtualSwitch: VirtualSwitch
    private let statistics: HostPortPump.Statistics
    private let scratch: Mutex<[UInt8]>

    init(endpoint: VirtioFrameEndpoint, port: SwitchPortID, switch virtualSwitch: VirtualSwitch,
         statistics: HostPortPump.Statistics) {
        self.endpoint = endpoint
        self.port = port
        self.virtualSwitch = virtualSwitch
        self.statistics = statistics
        scratch = Mutex([UInt8](repeating: 0, count: VirtioFrameEndpoint.maximumFrameSize + endpoint.headerSize))
    }

    /// Reads up to one batch and switches it.
    /// - Parameter waiting: wait for another reader to finish (the pump) rather than return.
    /// - Returns: the frames switched, or `nil` if another reader held the endpoint.
    func forward(waiting: Bool) -> Int? {
        waiting ? scratch.withLock { readBatch(into: &$0) } : scratch.withLockIfAvailable { readBatch(into: &$0) }
    }

    private func readBatch(into buffer: inout [UInt8]) -> Int {
        var frames: [NetworkFrame] = []
        reading: while frames.count < HostPortPump.batch {
            do throws(SystemError) {
                switch try endpoint.read(into: &buffer) {
                case .frame(let frame): frames.append(frame)
                case .empty: break reading
                case .unusable: statistics.unusableReads.add(1, ordering: .relaxed)
                }
            } catch {
                statistics.failures.add(1, ordering: .relaxed)
                break reading
            }
        }
        let count = frames.count
        if count > 0 { virtualSwitch.send(draining: &frames, from: port) }
        return count
    }
}
