import BenchProtocol
import VMBusClient
import VMBusProtocol

/// The soak's traffic (`hv bench soak`, Docs/benchmarks.md): pings outside any phase, each
/// waiting for its own pong, for as long as the partition runs, while the parent may die and
/// come back. A parent that dies after publishing a pong but before letting its ping go
/// answers that ping again (its successor reads it once more), so pongs of earlier pings are
/// counted as duplicates and skipped; a ping that gets no pong at all within the timeout is lost.
extension BenchVSC {
    public struct SoakCounts {
        public var pings: UInt64 = 0
        public var pongs: UInt64 = 0
        /// Pings with no pong within the timeout.
        public var lost: UInt64 = 0
        /// Pongs of pings answered already.
        public var duplicates: UInt64 = 0
        public init() {}
    }

    /// Sends ping `sequence` and waits up to `timeoutNanoseconds` for its pong; `wait` is called
    /// while nothing has arrived (the guest sleeps until an interrupt or a short timeout).
    public mutating func soakPing(sequence: UInt32, timeoutNanoseconds: UInt64, counts: inout SoakCounts,
                                  wait: () -> Void) {
        var ping = [UInt8](repeating: 0, count: BenchProtocol.minimumMessageSize)
        BenchHeader(kind: .ping, phase: 0, sequence: sequence).store(into: &ping)
        let start = channel.timestamp()
        let deadline = start &+ channel.ticks(nanoseconds: timeoutNanoseconds)
        guard channel.send(transactionID: UInt64(sequence), payload: ping, timeoutNanoseconds: timeoutNanoseconds) else {
            counts.lost += 1
            return
        }
        counts.pings += 1
        while channel.timestamp() < deadline {
            guard let descriptor = channel.receive(into: &buffer) else {
                wait()
                continue
            }
            let payload = buffer[descriptor.payloadOffset..<descriptor.totalLength]
            guard let header = BenchHeader(parsing: payload), header.kind == .pong else { continue }
            if header.sequence == sequence {
                counts.pongs += 1
                return
            }
            counts.duplicates += 1
        }
        counts.lost += 1
    }
}
