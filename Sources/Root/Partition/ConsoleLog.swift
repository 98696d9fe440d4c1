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

    /// Appends a complete line (cut to `lineLimit` bytes, made `printable`).
    /// - Returns: the line as kept, for the root's log.
    @discardableResult
    public func append(line: String) -> String {
        let printable = Self.printable(line)
        let line = printable.utf8.count > Self.lineLimit
            ? String(decoding: printable.utf8.prefix(Self.lineLimit), as: UTF8.self) : printable
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
        return line
    }

    /// `text` with every control character but tab (C0, DEL, C1: a newline, a carriage return,
    /// an escape sequence) written out as `\u{…}`: what a guest prints reaches the root's log and
    /// the user's terminal, where a newline would forge a log line of the root's or another
    /// partition's and an escape sequence would drive the terminal.
    public static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            if isControl(scalar) {
                result += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 && scalar != "\t" || (0x7F...0x9F).contains(scalar.value)
    }

    /// Appends raw console bytes; returns the lines they completed, as kept (`append(line:)`).
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
        return completed.map { append(line: $0) }
    }

    /// The kept lines, oldest first.
    public var snapshot: [String] { state.withLock { $0.lines } }
}
