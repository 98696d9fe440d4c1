import Glibc
import GuestMemory
import HyperV
import LinuxSupport
import Synchronization
import VMBusHost
import VMBusProtocol

/// A guest's end of one VMBus channel, played in memory: the channel is opened the way the
/// parent's VMBus service opens one (rings over pages of a memfd-backed `GuestMemory`, a session
/// from the device's `openSession`, then a `ChannelWorker`), with no KVM and no VMBus control plane.
/// The test writes packets into the guest→host ring as a guest would, reads the device's answers
/// from the host→guest ring, and rings the channel's doorbell.
///
/// Used from one test thread; the worker runs on its own.
public final class FakeGuest {
    /// The two rings, named by direction.
    public enum Ring: Sendable {
        case guestToHost, hostToGuest
    }

    /// A packet the device sent.
    public struct Packet: Sendable {
        public var descriptor: PacketDescriptor
        /// The payload as the guest sees it, padding to 8 bytes included.
        public var payload: [UInt8]
    }

    public enum HarnessError: Error {
        /// The device refused the open (`openSession` returned nil).
        case refused
    }

    public let memory: GuestMemory
    public let relID: UInt32
    /// The doorbell of the channel's guest→host direction (an ioeventfd in a real partition).
    public let guestSignal: EventFD
    /// The guest's producer of the guest→host ring.
    public var writer: RingWriter<GuestRingMemory>
    /// The guest's consumer of the host→guest ring.
    public var reader: RingReader<GuestRingMemory>
    public let guestToHostPages: [UInt64]
    public let hostToGuestPages: [UInt64]
    /// What the channel's worker counted (packets, ring bytes and signals each way).
    public let counters: ChannelCounters
    private let events = Events()
    private var worker: ChannelWorker?
    private var buffer: [UInt8] = []

    /// What the worker thread reports.
    private final class Events: Sendable {
        let failure = Mutex<String?>(nil)
        let signals = Atomic<Int>(0)
        let subChannelRequests = Mutex<[Int]>([])
    }

    /// Opens a channel to `device`.
    /// - Parameters:
    ///   - ringPages: pages per ring, control page included (the default is a 60 KiB data area).
    ///   - guestToHostPages, hostToGuestPages: the rings' page frame numbers (control page first),
    ///     to place them, e.g. scattered; by default each ring is contiguous.
    ///   - memory: guest RAM; by default 4 MiB of fresh memfd-backed RAM.
    ///   - subChannelIndex: which of the device's channels this is (0: its primary channel).
    public init(device: any VirtualServiceProvider, relID: UInt32 = 1, subChannelIndex: UInt16 = 0, targetVP: UInt32 = 0,
                ringPages: Int = 16, guestToHostPages: [UInt64]? = nil, hostToGuestPages: [UInt64]? = nil,
                memory: GuestMemory? = nil) throws {
        self.relID = relID
        self.memory = try memory ?? GuestMemory.create(name: "fake-guest", size: 4 << 20)
        let toHost = guestToHostPages ?? (0..<UInt64(ringPages)).map { 16 + $0 }
        let toGuest = hostToGuestPages ?? (0..<UInt64(ringPages)).map { 16 + UInt64(ringPages) + $0 }
        self.guestToHostPages = toHost
        self.hostToGuestPages = toGuest
        writer = try RingWriter(memory: GuestRingMemory(memory: self.memory, pages: toHost[...]))
        reader = try RingReader(memory: GuestRingMemory(memory: self.memory, pages: toGuest[...]))
        guestSignal = try EventFD()
        let events = events
        let channel = try VSPChannel(
            relID: relID, subChannelIndex: subChannelIndex, incoming: GuestRingMemory(memory: self.memory, pages: toHost[...]),
            outgoing: GuestRingMemory(memory: self.memory, pages: toGuest[...]), targetVP: targetVP,
            guestSignal: guestSignal,
            signalGuest: { _ in events.signals.wrappingAdd(1, ordering: .relaxed) },
            subChannels: { count in events.subChannelRequests.withLock { $0.append(count) } })
        counters = channel.counters
        let opening = ChannelOpening(relID: relID, subChannelIndex: subChannelIndex, targetVP: targetVP)
        guard let session = device.openSession(opening) else { throw HarnessError.refused }
        worker = try ChannelWorker(channel: channel, session: session) { reason in
            events.failure.withLock { $0 = reason }
        }
    }

    deinit { close() }

    /// Closes the channel: stops the worker (the session hears `close`). Idempotent.
    public func close() {
        worker?.stop()
        worker = nil
    }

    // MARK: Guest → host

    /// Writes one packet and signals the host if it needs it, waiting up to `seconds` for room.
    /// - Returns: false if the host never made room (it stopped draining).
    @discardableResult
    public func send(_ payload: [UInt8], transactionID: UInt64 = 0, type: PacketType = .inband, flags: PacketFlags = [],
                     within seconds: Double = 10) -> Bool {
        let deadline = MonotonicClock.nanoseconds() + UInt64(seconds * 1e9)
        while true {
            do throws(RingError) {
                try writer.write(type: type, flags: flags, transactionID: transactionID, payload: payload)
                break
            } catch {
                guard MonotonicClock.nanoseconds() < deadline else { return false }
                usleep(100)
            }
        }
        if writer.commit() { guestSignal.signal() }
        return true
    }

    /// Rings the channel's doorbell, as HvSignalEvent on the channel's connection does.
    public func signalHost() { guestSignal.signal() }

    // MARK: Host → guest

    /// The next packet from the device, waiting up to `seconds`; nil if none came.
    public func receive(within seconds: Double = 10) -> Packet? {
        let deadline = MonotonicClock.nanoseconds() + UInt64(seconds * 1e9)
        while true {
            if let packet = next() { return packet }
            guard MonotonicClock.nanoseconds() < deadline, failure == nil else { return next() }
            usleep(50)
        }
    }

    /// The next packet already in the ring, if any. A corrupt host→guest ring traps the test.
    private func next() -> Packet? {
        let descriptor: PacketDescriptor?
        do throws(RingError) {
            descriptor = try reader.next(into: &buffer)
        } catch {
            preconditionFailure("the device corrupted the host→guest ring: \(error)")
        }
        guard let descriptor else { return nil }
        // Free the space at once and tell a host waiting for room (pending_send_sz).
        if reader.commit() { guestSignal.signal() }
        return Packet(descriptor: descriptor, payload: Array(buffer[descriptor.payloadOffset..<descriptor.totalLength]))
    }

    /// The sub-channel counts the device asked the bus to offer, in order.
    public var subChannelRequests: [Int] { events.subChannelRequests.withLock { $0 } }

    /// How many times the host signalled the guest (set the channel's event flag and raised its SINT).
    public var hostSignals: Int { events.signals.load(ordering: .relaxed) }

    // MARK: Failure

    /// Why the worker gave the channel up, if it did.
    public var failure: String? { events.failure.withLock { $0 } }

    /// Waits up to `seconds` for the worker to give the channel up; returns why.
    public func waitForFailure(within seconds: Double = 10) -> String? {
        let deadline = MonotonicClock.nanoseconds() + UInt64(seconds * 1e9)
        while failure == nil && MonotonicClock.nanoseconds() < deadline { usleep(100) }
        return failure
    }

    // MARK: Misbehaving

    /// The pages of `ring`, control page first.
    public func pages(of ring: Ring) -> [UInt64] {
        ring == .guestToHost ? guestToHostPages : hostToGuestPages
    }

    /// Overwrites a control word of `ring` behind the ring code's back, as a hostile guest can.
    public func overwrite(_ word: RingControlWord, of ring: Ring, with value: UInt32) throws {
        let address = GuestPhysicalAddress(pageNumber: pages(of: ring)[0]).rawValue + UInt64(word.byteOffset)
        try memory.atomicStore(value, at: GuestPhysicalAddress(address), ordering: .sequentiallyConsistent)
    }

    /// Overwrites `bytes` at `offset` into the data area of `ring`.
    public func overwriteData(of ring: Ring, at offset: Int, with bytes: [UInt8]) throws {
        let dataPages = Array(pages(of: ring).dropFirst())
        for (index, byte) in bytes.enumerated() {
            let position = offset + index
            let page = dataPages[(position / VMBusConstants.pageSize) % dataPages.count]
            try memory.write([byte], at: GuestPhysicalAddress(page * UInt64(VMBusConstants.pageSize)
                + UInt64(position % VMBusConstants.pageSize)))
        }
    }
}

/// A device whose every channel is served by one given session: lets a test keep hold of the
/// session (it must then be `Sendable`) to watch what the worker does with it.
public struct ServingSession: VirtualServiceProvider {
    public let session: any ChannelSession & Sendable

    public init(_ session: any ChannelSession & Sendable) {
        self.session = session
    }

    public func openSession(_ opening: ChannelOpening) -> sending (any ChannelSession)? {
        session
    }
}
