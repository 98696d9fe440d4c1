import ControlProtocol
import Partition

/// String I/O (REP INS/OUTS) on a port the parent intercepts, forwarded as one message per exit
/// rather than one per element: an emulated disk's 4 KiB PIO read is then one round trip to the
/// parent instead of 2,048.
extension ParentPortForwarder {
    func readString(partition: Partition, vp: Int, port: UInt16, size: Int, count: Int) -> [UInt8] {
        readString(vp: vp, port: port, size: size, count: count, partition: partition)
    }

    func writeString(partition: Partition, vp: Int, port: UInt16, size: Int, bytes: [UInt8]) {
        writeString(vp: vp, port: port, size: size, bytes: bytes, partition: partition)
    }

    /// The guest on processor `vp` reads `count` elements of `size` bytes from `port` with one
    /// string instruction: asks the parent once and waits, as `read` does (one access of the
    /// partition's `PortAccessBudget`, in its lane).
    func readString(vp: Int, port: UInt16, size: Int, count: Int, partition: Partition? = nil) -> [UInt8] {
        let total = max(0, min(size * count, RootMessage.maximumStringBytes))
        let floating = [UInt8](repeating: 0xFF, count: total)
        guard total > 0, !connection.closed.load(ordering: .acquiring) else { return floating }
        budget.pace()
        let request = connection.nextRequest.wrappingAdd(1, ordering: .relaxed).oldValue
        connection.pendingStringReads.update { $0[request] = .some(nil) }
        let message = RootMessage.portReadString(requestID: request, partitionID: partitionID, vp: UInt32(vp), port: port,
                                                 size: UInt8(size), count: UInt32(total / size))
        guard enqueue(message, partition: partition) else {
            connection.pendingStringReads.update { _ = $0.removeValue(forKey: request) }
            return floating
        }
        let answer = connection.pendingStringReads.wait(
            until: { $0[request] != .some(nil) }, timeoutNanoseconds: connection.portReadTimeout
        ) { reads -> [UInt8]? in
            reads.removeValue(forKey: request) ?? nil
        }
        if answer == nil { connection.pendingStringReads.update { _ = $0.removeValue(forKey: request) } }
        // A short (or missing) answer reads as a floating bus where it has no bytes.
        let bytes = (answer ?? nil) ?? []
        return Array(bytes.prefix(total)) + floating.dropFirst(min(bytes.count, total))
    }

    /// The guest on processor `vp` writes `bytes` to `port` with one string instruction. Posted.
    func writeString(vp: Int, port: UInt16, size: Int, bytes: [UInt8], partition: Partition? = nil) {
        guard !connection.closed.load(ordering: .acquiring) else { return }
        budget.pace()
        var offset = 0
        while offset < bytes.count {
            let chunk = Array(bytes[offset..<min(bytes.count, offset + RootMessage.maximumStringBytes)])
            let message = RootMessage.portWriteString(partitionID: partitionID, vp: UInt32(vp), port: port, size: UInt8(size),
                                                      bytes: chunk)
            guard enqueue(message, partition: partition) else { return }
            offset += chunk.count
        }
    }
}
