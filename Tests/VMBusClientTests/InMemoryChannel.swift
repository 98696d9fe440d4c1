import HyperV
import LinuxSupport
import Synchronization
import VMBusClient
import VMBusProtocol

/// The host's implementation of the guest's channel abstraction: the guest end of a channel over
/// any `RingMemory` (in the IC tests, the very pages of a `GuestMemory` the parent's worker
/// serves), with the real `RingWriter`/`RingReader`. The host's doorbell and the channel's
/// interrupts are counters shared with the host side; time is CLOCK_MONOTONIC.
struct InMemoryChannel<Memory: RingMemory>: VMBusChannel {
    let relID: UInt32
    var writer: RingWriter<Memory>
    var reader: RingReader<Memory>
    /// Rings the host's doorbell (the guest's HvSignalEvent on the channel's connection).
    let doorbell: @Sendable () -> Void
    /// Interrupts the host raised for this channel.
    let interrupts: Counter
    /// HvSignalEvents on other connections.
    let otherSignals = Counter()

    init(relID: UInt32, outgoing: Memory, incoming: Memory, interrupts: Counter = Counter(),
         doorbell: @escaping @Sendable () -> Void) throws(RingError) {
        self.relID = relID
        writer = try RingWriter(memory: outgoing)
        reader = try RingReader(memory: incoming)
        self.interrupts = interrupts
        self.doorbell = doorbell
    }

    var outgoingDataSize: Int { writer.memory.dataSize }
    var incomingDataSize: Int { reader.memory.dataSize }

    mutating func stage(_ type: PacketType, flags: PacketFlags, transactionID: UInt64, header: [UInt8],
                        payload: [UInt8]) -> Bool {
        do throws(RingError) {
            try writer.write(type: type, flags: flags, transactionID: transactionID, header: header, payload: payload)
            return true
        } catch {
            return false
        }
    }

    mutating func publish() {
        if writer.commit() { doorbell() }
    }

    mutating func receive(into buffer: inout [UInt8]) -> PacketDescriptor? {
        let descriptor: PacketDescriptor?
        do throws(RingError) {
            descriptor = try reader.next(into: &buffer)
        } catch {
            return nil
        }
        if descriptor != nil, reader.commit() { doorbell() }
        return descriptor
    }

    mutating func beginPolling() { reader.beginPolling() }
    mutating func endPolling() -> Bool { reader.endPolling() }
    mutating func signalHost() { doorbell() }
    func signalEvent(connection: ConnectionID) { otherSignals.add() }
    var interruptCount: UInt64 { interrupts.value }

    func timestamp() -> UInt64 { MonotonicClock.nanoseconds() }
    func nanoseconds(from start: UInt64, to end: UInt64) -> UInt64 { end &- start }
    func ticks(nanoseconds: UInt64) -> UInt64 { nanoseconds }
    func relax() { MonotonicClock.sleep(.microseconds(50)) }
}

/// A count shared between threads.
final class Counter: Sendable {
    private let count = Atomic<UInt64>(0)
    func add() { count.wrappingAdd(1, ordering: .acquiringAndReleasing) }
    var value: UInt64 { count.load(ordering: .acquiring) }
}

/// A value shared between threads.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}
