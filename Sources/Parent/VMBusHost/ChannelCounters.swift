import Synchronization

/// What one open channel carried, counted by its worker thread (the only writer) and read by
/// anyone: packets and ring bytes each way, the guest's signals the worker woke for, and the
/// host's signals to the guest.
public final class ChannelCounters: Sendable {
    private let packetsIn = Atomic<UInt64>(0)
    private let bytesIn = Atomic<UInt64>(0)
    private let signalsIn = Atomic<UInt64>(0)
    private let packetsOut = Atomic<UInt64>(0)
    private let bytesOut = Atomic<UInt64>(0)
    private let signalsOut = Atomic<UInt64>(0)

    public init() {}

    /// A consistent-enough copy of the counters (each read on its own).
    public struct Snapshot: Hashable, Sendable {
        /// Guest → host.
        public var packetsIn: UInt64
        public var bytesIn: UInt64
        public var signalsIn: UInt64
        /// Host → guest.
        public var packetsOut: UInt64
        public var bytesOut: UInt64
        public var signalsOut: UInt64

        public init(packetsIn: UInt64, bytesIn: UInt64, signalsIn: UInt64, packetsOut: UInt64, bytesOut: UInt64,
                    signalsOut: UInt64) {
            self.packetsIn = packetsIn
            self.bytesIn = bytesIn
            self.signalsIn = signalsIn
            self.packetsOut = packetsOut
            self.bytesOut = bytesOut
            self.signalsOut = signalsOut
        }
    }

    public var snapshot: Snapshot {
        Snapshot(packetsIn: packetsIn.load(ordering: .relaxed), bytesIn: bytesIn.load(ordering: .relaxed),
                 signalsIn: signalsIn.load(ordering: .relaxed), packetsOut: packetsOut.load(ordering: .relaxed),
                 bytesOut: bytesOut.load(ordering: .relaxed), signalsOut: signalsOut.load(ordering: .relaxed))
    }

    // The worker is the only writer, so a load and a store suffice (no read-modify-write).
    func received(bytes: Int) {
        packetsIn.store(packetsIn.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        bytesIn.store(bytesIn.load(ordering: .relaxed) &+ UInt64(bytes), ordering: .relaxed)
    }

    func sent(bytes: Int) {
        packetsOut.store(packetsOut.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        bytesOut.store(bytesOut.load(ordering: .relaxed) &+ UInt64(bytes), ordering: .relaxed)
    }

    func guestSignalled(_ count: UInt64) {
        signalsIn.store(signalsIn.load(ordering: .relaxed) &+ count, ordering: .relaxed)
    }

    func signalledGuest() {
        signalsOut.store(signalsOut.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
    }
}
