import LinuxSupport
import VMBusProtocol

/// The thread that serves one open channel: it drains the guest→host ring into the device,
/// publishes the device's answers, and sleeps on the guest's doorbell when idle.
///
/// Interrupt suppression follows Docs/hyperv-interface.md §8.4-§8.5: while the worker is draining
/// it keeps the incoming ring's interrupt_mask set, so the guest does not signal; before sleeping
/// it clears the mask, issues a full barrier and re-checks the ring (the lost-wakeup race). When
/// the ring goes idle the worker polls briefly before sleeping, because waking a blocked thread
/// costs ~14 µs here.
public final class ChannelWorker: Sendable {
    public let channel: VSPChannel
    private let device: any VirtualServiceProvider
    private let thread: StoppableThread

    /// How long an idle worker polls before sleeping.
    public static let spinNanoseconds: UInt64 = 30_000

    /// While draining, the worker publishes its read index after at most this many bytes, so a
    /// guest waiting on a full ring refills it while the worker reads on, instead of waiting for
    /// the whole ring to drain (which halves the throughput of a streaming guest).
    public static let commitBytes = 16 * 1024

    /// Starts serving `channel` with `device`.
    /// - Parameter onFailure: called (on the worker thread, after it stopped serving) when the
    ///   guest broke the ring or the device protocol; the owner closes and rescinds the channel.
    public init(channel: VSPChannel, device: any VirtualServiceProvider,
                onFailure: @escaping @Sendable (String) -> Void) throws(SystemError) {
        self.channel = channel
        self.device = device
        thread = try StoppableThread(name: "ch\(channel.relID)") { [channel, device] stopEvent in
            do throws(VSPError) {
                try Self.serve(channel, device, stopEvent)
            } catch {
                device.channelClosed()
                onFailure("\(error)")
                return
            }
            device.channelClosed()
        }
    }

    /// Stops the worker and waits for it. Idempotent; must not be called from the worker.
    public func stop() {
        thread.stop()
    }

    private static func serve(_ channel: VSPChannel, _ device: any VirtualServiceProvider, _ stopEvent: EventFD) throws(VSPError) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let tickInterval = device.tickInterval
        var nextTick = tickInterval.map { MonotonicClock.nanoseconds() &+ $0 } ?? .max
        var lastProgress = MonotonicClock.nanoseconds()
        channel.reader.beginPolling()
        while true {
            var progressed = try channel.flushBacklog()
            var uncommitted = 0
            while true {
                let descriptor: PacketDescriptor?
                do throws(RingError) {
                    descriptor = try channel.reader.next(into: &buffer)
                } catch {
                    throw .ring("\(error)")
                }
                guard let descriptor else { break }
                try device.handle(IncomingPacket(descriptor: descriptor, bytes: buffer), on: channel)
                progressed = true
                uncommitted += descriptor.totalLength
                if uncommitted >= Self.commitBytes {
                    if channel.reader.commit() { channel.signal() }
                    uncommitted = 0
                }
            }
            if channel.reader.commit() { channel.signal() }
            if try device.work(on: channel) { progressed = true }
            channel.publish()
            let now = MonotonicClock.nanoseconds()
            if now >= nextTick, let tickInterval {
                device.tick(on: channel)
                channel.publish()
                nextTick = now &+ tickInterval
            }
            if progressed {
                lastProgress = now
                continue
            }
            if now < channel.pollingDeadline || now &- lastProgress < channel.idleSpinNanoseconds {
                if stopEvent.consume() != nil { return }
                continue
            }
            // Idle: let the guest signal us again, then make sure nothing slipped in meanwhile.
            if channel.reader.endPolling() {
                channel.reader.beginPolling()
                continue
            }
            let timeout = nextTick == .max ? Int32(-1) : Int32(clamping: (nextTick &- now) / 1_000_000 + 1)
            let ready: [Bool]
            do throws(SystemError) {
                ready = try Poll.wait(on: [channel.guestSignal.rawValue, stopEvent.rawValue], timeoutMilliseconds: timeout)
            } catch {
                // The channel can no longer be served: give it up so the owner closes and rescinds it.
                throw .ring("cannot wait for the guest's signal: \(error)")
            }
            if ready[1] { return }
            if ready[0] { _ = channel.guestSignal.consume() }
            channel.reader.beginPolling()
            lastProgress = MonotonicClock.nanoseconds()
        }
    }
}
