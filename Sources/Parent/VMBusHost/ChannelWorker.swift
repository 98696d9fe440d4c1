import Glibc
import LinuxSupport
import VMBusProtocol

/// The thread that serves one open channel: it drains the guest→host ring into the device,
/// publishes the device's answers, and sleeps on the guest's doorbell when idle.
///
/// Interrupt suppression follows Docs/hyperv-interface.md §8.4-§8.5: while the worker is draining
/// it keeps the incoming ring's interrupt_mask set, so the guest does not signal; before sleeping
/// it clears the mask, issues a full barrier and re-checks the ring (the lost-wakeup race). When
/// the ring goes idle the worker polls briefly before sleeping, because waking a blocked thread
/// costs ~14 µs here; it yields its core on every turn of the poll.
public final class ChannelWorker: Sendable {
    /// The processor the channel's events go to (MODIFYCHANNEL moves it).
    public let target: ChannelTarget
    public let relID: UInt32
    private let thread: StoppableThread

    /// How long an idle worker polls before sleeping.
    public static let spinNanoseconds: UInt64 = 30_000

    /// While draining, the worker publishes its read index after at most this many bytes, so a
    /// guest waiting on a full ring refills it while the worker reads on, instead of waiting for
    /// the whole ring to drain (which halves the throughput of a streaming guest).
    public static let commitBytes = 16 * 1024

    /// A pass over the ring ends after about this long, however full the guest keeps the ring:
    /// the session's `work` (a NIC's frames for the guest, packets for it from other channels,
    /// a link change) then runs before the worker reads on.
    public static let passNanoseconds: UInt64 = 1_000_000

    /// While draining, the worker looks at the clock after this many packets.
    static let passCheckInterval = 16

    /// While it never sleeps, the worker looks for a stop request at least this often (a system
    /// call, so not on every pass): once every pass, however short, a guest that keeps it busy
    /// with a few packets at a time could otherwise put the check off for ever, and with it the
    /// close its owner waits for.
    static let stopCheckNanoseconds: UInt64 = 1_000_000

    /// Starts serving `channel` with `session` on a new thread; both are sent to it and used
    /// only there. The session is started first and closed when the worker ends.
    /// - Parameter onFailure: called (on the worker thread, after it stopped serving) when the
    ///   guest broke the ring or the device protocol; the owner closes and rescinds the channel.
    public init(channel: sending VSPChannel, session: sending any ChannelSession,
                onFailure: @escaping @Sendable (String) -> Void) throws(SystemError) {
        target = channel.target
        relID = channel.relID
        let handoff = Handoff(channel: channel, session: session)
        do throws(SystemError) {
            thread = try StoppableThread(name: "ch\(relID)") { stopEvent in
                guard let (channel, session) = handoff.take() else { return }
                do throws(VSPError) {
                    try session.start(on: channel)
                    channel.publish()
                    try Self.serve(channel, session, stopEvent)
                } catch {
                    session.close()
                    onFailure("\(error)")
                    return
                }
                session.close()
            }
        } catch {
            // No thread started: the session is closed here, as the worker would have (a
            // storage device counts its open channels).
            handoff.take()?.session.close()
            throw error
        }
    }

    /// The channel and its session on their way to the worker thread, or back to `init` when
    /// no thread could start.
    private final class Handoff: @unchecked Sendable {
        // SAFETY: filled before the thread is created; then taken exactly once, by the worker
        // thread as it starts or by `init` after the thread could not be created (no thread
        // exists then), never by both, so it is never touched from two threads at once.
        private var contents: (channel: VSPChannel, session: any ChannelSession)?

        init(channel: sending VSPChannel, session: sending any ChannelSession) {
            contents = (channel, session)
        }

        func take() -> (channel: VSPChannel, session: any ChannelSession)? {
            defer { contents = nil }
            return contents
        }
    }

    /// Stops the worker and waits for it. Idempotent; must not be called from the worker.
    public func stop() {
        thread.stop()
    }

    /// Asks the worker to stop without waiting: its session closes (a storage channel drains
    /// its disk requests) while the caller asks others; `stop()` then waits.
    public func requestStop() {
        thread.requestStop()
    }

    private static func serve(_ channel: VSPChannel, _ session: any ChannelSession, _ stopEvent: EventFD) throws(VSPError) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let tickInterval = session.tickInterval
        var nextTick = tickInterval.map { MonotonicClock.nanoseconds() &+ $0 } ?? .max
        var lastProgress = MonotonicClock.nanoseconds()
        var lastStopCheck = lastProgress
        channel.reader.beginPolling()
        while true {
            // A pass lasts a millisecond or so at most (below), so a stop is seen within about
            // two, however busy the guest keeps the worker.
            let passStart = MonotonicClock.nanoseconds()
            if passStart &- lastStopCheck >= Self.stopCheckNanoseconds {
                if stopEvent.consume() != nil { return }
                lastStopCheck = passStart
            }
            var progressed = try channel.flushBacklog()
            var uncommitted = 0
            var drained = 0
            // The session turned a packet away for now: leave the ring alone until it can go on.
            var held = false
            while true {
                drained += 1
                guard session.acceptsPacket(on: channel) else {
                    held = true
                    break
                }
                let descriptor: PacketDescriptor?
                do throws(RingError) {
                    descriptor = try channel.reader.next(into: &buffer)
                } catch {
                    throw .ring("\(error)")
                }
                guard let descriptor else { break }
                channel.counters.received(bytes: descriptor.totalLength + RingLayout.trailerSize)
                try session.handle(IncomingPacket(descriptor: descriptor, bytes: buffer), on: channel)
                progressed = true
                uncommitted += descriptor.totalLength
                if uncommitted >= Self.commitBytes || session.answersAreDue(on: channel) {
                    channel.publish()
                    if channel.reader.commit() { channel.signal() }
                    uncommitted = 0
                }
                // A guest that keeps its ring full must not keep the session's own work waiting.
                if drained % Self.passCheckInterval == 0, MonotonicClock.nanoseconds() &- passStart > Self.passNanoseconds {
                    break
                }
            }
            // Answers are published before the requests they answer are let go: a parent that
            // dies in between leaves those requests in the ring for the next one (an answer may
            // come twice, none is lost with its request).
            channel.publish()
            if channel.reader.commit() { channel.signal() }
            if try session.work(on: channel) { progressed = true }
            channel.publish()
            let now = MonotonicClock.nanoseconds()
            if now >= nextTick, let tickInterval {
                try session.tick(on: channel)
                channel.publish()
                nextTick = now &+ tickInterval
            }
            if progressed {
                lastProgress = now
                continue
            }
            if now < channel.pollingDeadline || now &- lastProgress < channel.idleSpinNanoseconds {
                // Polling must not keep the thread that does the work off this core: the kernel's
                // io_uring workers (buffered writes) or the guest's vCPU on a small host.
                sched_yield()
                continue
            }
            if try session.beforeSleeping(on: channel) {
                channel.publish()
                lastProgress = MonotonicClock.nanoseconds()
                continue
            }
            // Idle: let the guest signal us again, then make sure nothing slipped in meanwhile.
            // While the session holds packets back, the ring stays masked: the guest's doorbell
            // then only rings for the space the session asked for.
            if !held, channel.reader.endPolling() {
                channel.reader.beginPolling()
                continue
            }
            let wakeAt = min(nextTick, session.wakeDeadline ?? .max)
            let timeout = wakeAt == .max ? Int32(-1) : Int32(clamping: (wakeAt &- min(now, wakeAt)) / 1_000_000 + 1)
            let ready: [Bool]
            do throws(SystemError) {
                ready = try Poll.wait(on: [channel.guestSignal.rawValue, stopEvent.rawValue] + session.wakeDescriptors,
                                      timeoutMilliseconds: timeout)
            } catch {
                // The channel can no longer be served: give it up so the owner closes and rescinds it.
                throw .ring("cannot wait for the guest's signal: \(error)")
            }
            if ready[1] { return }
            // The poll looked at the stop event just now.
            lastStopCheck = MonotonicClock.nanoseconds()
            if ready[0], let signals = channel.guestSignal.consume() { channel.counters.guestSignalled(signals) }
            channel.reader.beginPolling()
            lastProgress = MonotonicClock.nanoseconds()
        }
    }
}
