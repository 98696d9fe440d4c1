import DeviceHost
import GuestMemory
import HyperV
import LinuxSupport
import VMBusHost
import VMBusProtocol

/// Plays the guest of one channel of a VSP, synchronously and without a worker thread, so a
/// fuzzer can push a million packets through a device: the session is opened as the parent
/// opens one (`openSession`, `start` on a `VSPChannel` over rings in memfd-backed RAM), each
/// packet goes straight to `handle` (the ring parsing in front of it has its own target,
/// `ring`), and what the device writes to the host→guest ring is read back as a guest would.
final class VSPFuzzHarness {
    /// A packet the device sent.
    struct HostPacket {
        var descriptor: PacketDescriptor
        var payload: [UInt8]
    }

    let device: any VirtualServiceProvider
    let context: FuzzDeviceContext
    private(set) var session: (any ChannelSession)?
    private(set) var channel: VSPChannel?
    private var guestReader: RingReader<GuestRingMemory>?
    private var buffer: [UInt8] = []
    private let signal: EventFD
    /// Sessions opened so far.
    private(set) var opens = 0

    static let ringPages = 16

    init(device: any VirtualServiceProvider, context: FuzzDeviceContext) throws {
        self.device = device
        self.context = context
        signal = try EventFD()
    }

    /// Opens a new session (closing the one open, if any), zeroing both rings first.
    /// - Returns: nil if the device refused the open, else the start's failure, if any.
    @discardableResult
    func open(relID: UInt32 = 1) -> VSPError?? {
        close()
        context.forgetFacts()
        let toHost = (0..<UInt64(Self.ringPages)).map { 16 + $0 }
        let toGuest = (0..<UInt64(Self.ringPages)).map { 16 + UInt64(Self.ringPages) + $0 }
        do {
            try context.memory.fill(0, at: GuestPhysicalAddress(16 * 4096), count: 2 * Self.ringPages * 4096)
            let channel = try VSPChannel(
                relID: relID, incoming: GuestRingMemory(memory: context.memory, pages: toHost[...]),
                outgoing: GuestRingMemory(memory: context.memory, pages: toGuest[...]), targetVP: 0, guestSignal: signal,
                signalGuest: { _ in }, subChannels: { _ in })
            guestReader = try RingReader(memory: GuestRingMemory(memory: context.memory, pages: toGuest[...]))
            guard let session = device.openSession(ChannelOpening(relID: relID, targetVP: 0)) else { return nil }
            opens += 1
            self.channel = channel
            self.session = session
            do throws(VSPError) {
                try session.start(on: channel)
                channel.publish()
            } catch {
                close()
                return .some(error)
            }
            return .some(nil)
        } catch {
            return nil
        }
    }

    /// Closes the session, as the worker does when the channel closes.
    func close() {
        session?.close()
        session = nil
        channel = nil
    }

    /// Hands the device one packet; a thrown error closes the session (as it closes the channel).
    @discardableResult
    func deliver(type: PacketType = .inband, flags: PacketFlags = [], transactionID: UInt64, payload: [UInt8]) -> VSPError? {
        guard let session, let channel else { return nil }
        let padded = (payload.count + 7) & ~7
        let total = PacketDescriptor.size + padded
        guard total <= Int(UInt16.max) * 8 else { return nil }
        let descriptor = PacketDescriptor(type: type, dataOffset8: UInt16(PacketDescriptor.size / 8),
                                          length8: UInt16(total / 8), flags: flags, transactionID: transactionID)
        var bytes = [UInt8](repeating: 0, count: total)
        descriptor.store(into: &bytes, at: 0)
        bytes.replaceSubrange(PacketDescriptor.size..<(PacketDescriptor.size + payload.count), with: payload)
        do throws(VSPError) {
            _ = try channel.writeQueuedPackets()
            try session.handle(IncomingPacket(descriptor: descriptor, bytes: bytes), on: channel)
            channel.publish()
            return nil
        } catch {
            close()
            return error
        }
    }

    /// Runs the session's periodic and background work once.
    @discardableResult
    func tick() -> VSPError? {
        guard let session, let channel else { return nil }
        do throws(VSPError) {
            _ = try channel.writeQueuedPackets()
            if session.tickInterval != nil { try session.tick(on: channel) }
            _ = try session.work(on: channel)
            channel.publish()
            return nil
        } catch {
            close()
            return error
        }
    }

    /// What the device wrote since the last call, read (and freed) as the guest would. A
    /// corrupt host→guest ring is the device's bug: it is returned as a problem.
    func drain(limit: Int = 256) -> (packets: [HostPacket], problem: String?) {
        guard var reader = guestReader else { return ([], nil) }
        var packets: [HostPacket] = []
        defer { guestReader = reader }
        do throws(RingError) {
            while packets.count < limit, let descriptor = try reader.next(into: &buffer) {
                packets.append(HostPacket(descriptor: descriptor,
                                          payload: Array(buffer[descriptor.payloadOffset..<descriptor.totalLength])))
            }
            _ = reader.commit()
            return (packets, nil)
        } catch {
            return (packets, "the device corrupted the host→guest ring: \(error)")
        }
    }
}
