import GuestKit
import HyperV
import VMBusClient
import VMBusProtocol

/// The guest end of an open channel (a VSC's transport): it writes the guest→host ring, reads
/// the host→guest ring, and signals the host with HvSignalEvent on the offer's connection ID
/// only when the rules of Docs/hyperv-interface.md §8.4 call for it. Time is the TSC.
public struct GuestChannel: VMBusChannel {
    public let relID: UInt32
    public let connectionID: UInt32
    public let interfaceType: GUID
    public var writer: RingWriter<LocalRingMemory>
    public var reader: RingReader<LocalRingMemory>
    let clock: Clock

    init(relID: UInt32, connectionID: UInt32, interfaceType: GUID, outgoing: LocalRingMemory, incoming: LocalRingMemory,
         clock: Clock) throws(RingError) {
        self.relID = relID
        self.connectionID = connectionID
        self.interfaceType = interfaceType
        self.clock = clock
        writer = try RingWriter(memory: outgoing)
        reader = try RingReader(memory: incoming)
    }

    public var outgoingDataSize: Int { writer.memory.dataSize }
    public var incomingDataSize: Int { reader.memory.dataSize }

    /// HvSignalEvent on the channel's connection (the ioeventfd fast path).
    public mutating func signalHost() {
        _ = Hypercall.signalEvent(connection: connectionID)
    }

    public func signalEvent(connection: ConnectionID) {
        _ = Hypercall.signalEvent(connection: connection.rawValue)
    }

    /// SINT 2 interrupts taken on this processor.
    public var interruptCount: UInt64 { SynICClient.interruptCount(slot: 0) }

    public mutating func stage(_ type: PacketType, flags: PacketFlags, transactionID: UInt64, payload: [UInt8]) -> Bool {
        do throws(RingError) {
            try writer.write(type: type, flags: flags, transactionID: transactionID, payload: payload)
            return true
        } catch {
            return false
        }
    }

    public mutating func publish() {
        if writer.commit() { signalHost() }
    }

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

    public mutating func beginPolling() { reader.beginPolling() }
    public mutating func endPolling() -> Bool { reader.endPolling() }

    public func timestamp() -> UInt64 { CPU.timestamp() }
    public func nanoseconds(from start: UInt64, to end: UInt64) -> UInt64 { clock.nanoseconds(from: start, to: end) }
    public func ticks(nanoseconds: UInt64) -> UInt64 { clock.ticks(nanoseconds: nanoseconds) }
    public func relax() { CPU.relax() }
    /// Halts until an interrupt or the local APIC timer (`CPU.sleep`).
    public func waitForInterrupt(nanoseconds: UInt64) { CPU.sleep(nanoseconds: nanoseconds) }
}
