import HyperV
import KVM
import LinuxSupport
import Synchronization

/// Emulates the I/O ports of a legacy device for the root, which has none itself: the parent
/// partition registers the ports, and the root forwards the guest's accesses to it.
public protocol PortInterceptor: Sendable {
    /// The guest wrote `value` (`size` bytes) to `port`. Posted: the processor does not wait.
    func write(partition: Partition, vp: Int, port: UInt16, size: Int, value: UInt32)
    /// The guest reads `size` bytes from `port`; the processor waits for the value.
    func read(partition: Partition, vp: Int, port: UInt16, size: Int) -> UInt32
    /// A string IN (REP INS) of `count` elements of `size` bytes from `port`, as one exit
    /// delivers it: the bytes in the order they were read (missing ones read as 0xFF).
    func readString(partition: Partition, vp: Int, port: UInt16, size: Int, count: Int) -> [UInt8]
    /// A string OUT (REP OUTS) of whole `size`-byte elements to `port`. Posted.
    func writeString(partition: Partition, vp: Int, port: UInt16, size: Int, bytes: [UInt8])
}

/// How long one string port read may spend asking an interceptor that answers element by
/// element (the default `readString`).
public enum PortStringReadBudget {
    public static let nanoseconds: UInt64 = 2_000_000_000
}

extension PortInterceptor {
    /// One `read` per element. Each may wait for its answer, so past `PortStringReadBudget`, or
    /// once the partition is asked to pause or stop, the remaining elements float high without
    /// asking: one exit never holds its processor (and a stop that joins it) for long.
    public func readString(partition: Partition, vp: Int, port: UInt16, size: Int, count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        let started = MonotonicClock.nanoseconds()
        for _ in 0..<max(0, count) {
            let asking = MonotonicClock.nanoseconds() - started < PortStringReadBudget.nanoseconds
                && partition.lifecycle.read({ $0.request }) == .run
            let value = asking ? read(partition: partition, vp: vp, port: port, size: size) : 0xFFFF_FFFF
            for shift in 0..<size { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * shift))) }
        }
        return bytes
    }

    /// One `write` per element.
    public func writeString(partition: Partition, vp: Int, port: UInt16, size: Int, bytes: [UInt8]) {
        var offset = 0
        while offset + size <= bytes.count {
            var value: UInt32 = 0
            for shift in 0..<size { value |= UInt32(bytes[offset + shift]) << (8 * shift) }
            write(partition: partition, vp: vp, port: port, size: size, value: value)
            offset += size
        }
    }
}

/// How many port ranges a partition's parent may intercept: each guest port access walks them,
/// so a parent registering one range per port would slow every exit.
public enum PortInterceptLimit {
    public static let ranges = 64
}

/// The ports of one partition that go to an interceptor.
final class PortInterceptTable: Sendable {
    private let entries = Mutex<[(range: Range<UInt16>, interceptor: any PortInterceptor)]>([])

    /// Adds `range` unless one of its ports is taken already, or the table holds
    /// `PortInterceptLimit.ranges` ranges. Returns whether it was added.
    func add(_ range: Range<UInt16>, _ interceptor: any PortInterceptor) -> Bool {
        entries.withLock { entries in
            guard entries.count < PortInterceptLimit.ranges,
                  !entries.contains(where: { $0.range.overlaps(range) }) else { return false }
            entries.append((range, interceptor))
            return true
        }
    }

    func removeAll() {
        entries.withLock { $0.removeAll() }
    }

    func interceptor(for port: UInt16) -> (any PortInterceptor)? {
        entries.withLock { list in list.first { $0.range.contains(port) }?.interceptor }
    }
}

extension Partition {
    /// Sends the guest's accesses to `range` to `interceptor`. A range that takes in a port the
    /// root handles itself (`PlatformPorts.rootOwned`), or one already intercepted, is refused.
    public func interceptPorts(_ range: Range<UInt16>, with interceptor: any PortInterceptor) throws(PartitionError) {
        if let taken = PlatformPorts.rootOwned.first(where: range.contains) {
            throw .invalidSpecification("ports 0x\(String(range.lowerBound, radix: 16))-0x\(String(range.upperBound - 1, radix: 16)) "
                                        + "include 0x\(String(taken, radix: 16)), which the root handles itself")
        }
        guard portIntercepts.add(range, interceptor) else {
            throw .invalidSpecification("ports 0x\(String(range.lowerBound, radix: 16))-0x\(String(range.upperBound - 1, radix: 16)) "
                                        + "overlap ports already intercepted, or \(PortInterceptLimit.ranges) ranges are")
        }
    }

    /// Removes every port intercept (the parent went away: those ports read as 0xFF again).
    public func removePortIntercepts() {
        portIntercepts.removeAll()
    }

    /// An eventfd that raises IOAPIC pin `pin` as an edge each time it is signalled (an irqfd on
    /// an IOAPIC-only route, so the unprogrammed 8259 never sees it).
    public func interruptLine(pin: UInt32) throws(PartitionError) -> EventFD {
        guard let resources else { throw .invalidTransition(from: state, operation: "raise an interrupt line of") }
        guard pin < 24 else { throw .invalidSpecification("the IOAPIC has 24 pins, not \(pin + 1)") }
        return try interruptLines.withLock { lines throws(PartitionError) -> EventFD in
            if let existing = lines[pin] { return existing }
            do {
                let event = try EventFD()
                let gsi = try resources.machine.addIOAPICRoute(pin: pin)
                try resources.machine.assignIRQFD(event, gsi: gsi)
                lines[pin] = event
                return event
            } catch {
                throw .failed("could not route IOAPIC pin \(pin)", error)
            }
        }
    }
}
