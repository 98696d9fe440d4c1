import GuestKit
import HyperV
import VMBusProtocol

/// The guest end of an open channel (a VSC's transport): it writes the guest→host ring, reads
/// the host→guest ring, and signals the host with HvSignalEvent on the offer's connection ID
/// only when the rules of Docs/hyperv-interface.md §8.4 call for it.
public struct GuestChannel {
    public let relID: UInt32
    public let connectionID: UInt32
    public let interfaceType: GUID
    public var writer: RingWriter<LocalRingMemory>
    public var reader: RingReader<LocalRingMemory>

    init(relID: UInt32, connectionID: UInt32, interfaceType: GUID, outgoing: LocalRingMemory, incoming: LocalRingMemory) throws(RingError) {
        self.relID = relID
        self.connectionID = connectionID
        self.interfaceType = interfaceType
        writer = try RingWriter(memory: outgoing)
        reader = try RingReader(memory: incoming)
    }

    /// HvSignalEvent on the channel's connection (the ioeventfd fast path).
    public mutating func signalHost() {
        _ = Hypercall.signalEvent(connection: connectionID)
    }

    /// Stages a packet; false if the ring is full.
    public mutating func stage(_ type: PacketType = .inband, flags: PacketFlags = [], transactionID: UInt64 = 0,
                               payload: [UInt8]) -> Bool {
        do throws(RingError) {
            try writer.write(type: type, flags: flags, transactionID: transactionID, payload: payload)
            return true
        } catch {
            return false
        }
    }

    /// Publishes staged packets, signalling the host if it asked to be told.
    public mutating func publish() {
        if writer.commit() { signalHost() }
    }

    /// Stages and publishes one packet, waiting (spinning) while the ring is full.
    public mutating func send(_ type: PacketType = .inband, flags: PacketFlags = [], transactionID: UInt64 = 0,
                              payload: [UInt8]) {
        while !stage(type, flags: flags, transactionID: transactionID, payload: payload) {
            publish()
            CPU.relax()
        }
        publish()
    }

    /// The next packet from the host, copied into `buffer`; signals the host if it was waiting
    /// for ring space.
    public mutating func receive(into buffer: inout [UInt8]) -> PacketDescriptor? {
        let descriptor: PacketDescriptor?
        do throws(RingError) {
            descriptor = try reader.next(into: &buffer)
        } catch {
            return nil
        }
        if descriptor != nil, reader.commit() { signalHost() }
        return descriptor
    }
}
