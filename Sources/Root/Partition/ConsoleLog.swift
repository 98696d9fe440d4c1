import Synchronization

/// The last lines a partition printed (debug port or serial console), bounded in lines and in
/// bytes: the guest decides what it prints.
public final class ConsoleLog: Sendable {
    private let state = Mutex<State>(State())
    private let pending = Mutex<[UInt8]>([])
    /// Lines kept.
    public let capacity: Int
    /// Bytes of text kept, over all lines.
    public let byteCapacity: Int
    /// The longest line; longer ones are split.
    public static let lineLimit = 4096

    private struct State {
        var lines: [String] = []
        var bytes = 0
    }

    public init(capacity: Int = 2000, byteCapacity: Int = 1 << 20) {
        self.capacity = capacity
        self.byteCapacity = byteCapacity
    }

    /// Appends a complete line (cut to `lineLimit` bytes).
    public func append(line: String) {
        let line = line.utf8.count > Self.lineLimit ? String(decoding: line.utf8.prefix(Self.lineLimit), as: UTF8.self) : line
        state.withLock { state in
            state.lines.append(line)
            state.bytes += line.utf8.count
            var drop = 0
            while state.lines.count - drop > capacity || state.bytes > byteCapacity && drop < state.lines.count - 1 {
                state.bytes -= state.lines[drop].utf8.count
                drop += 1
            }
            if drop > 0 { state.lines.removeFirst(drop) }
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
                    if buffer.count >= Self.lineLimit {
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
    public var snapshot: [String] { state.withLock { $0.lines } }
}
