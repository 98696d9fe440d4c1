import Synchronization

/// The last lines a partition printed (debug port or serial console).
public final class ConsoleLog: Sendable {
    private let lines = Mutex<[String]>([])
    private let pending = Mutex<[UInt8]>([])
    /// Lines kept.
    public let capacity: Int

    public init(capacity: Int = 2000) {
        self.capacity = capacity
    }

    /// Appends a complete line.
    public func append(line: String) {
        lines.withLock { lines in
            lines.append(line)
            if lines.count > capacity { lines.removeFirst(lines.count - capacity) }
        }
    }

    /// Appends raw console bytes; returns the lines they completed.
    @discardableResult
    public func append(bytes: [UInt8]) -> [String] {
        let completed = pending.withLock { buffer -> [String] in
            var result: [String] = []
            for byte in bytes {
                if byte == 0x0A {
                    result.append(String(decoding: buffer, as: UTF8.self))
                    buffer.removeAll(keepingCapacity: true)
                } else if byte != 0x0D {
                    buffer.append(byte)
                    if buffer.count >= 4096 {
                        result.append(String(decoding: buffer, as: UTF8.self))
                        buffer.removeAll(keepingCapacity: true)
                    }
                }
            }
            return result
        }
        for line in completed { append(line: line) }
        return completed
    }

    /// The kept lines, oldest first.
    public var snapshot: [String] { lines.withLock { $0 } }
}
