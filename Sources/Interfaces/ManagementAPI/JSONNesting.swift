import Foundation

/// A pre-check of JSON text before it reaches `JSONDecoder`: UTF-8, with arrays and objects
/// nested at most `limit` deep. Configurations and requests need a few levels; Foundation's
/// decoder traps on some inputs nested past its own limit of 512 (an unterminated run of 513
/// `[`), so the root and the client refuse anything deeper than `limit` before decoding. The
/// decoder also takes UTF-16 and UTF-32 (with or without a byte-order mark), whose brackets a
/// byte scan cannot count, so those are refused too: their ASCII characters carry NUL bytes,
/// which UTF-8 JSON never holds.
public enum JSONNesting {
    /// The deepest nesting accepted.
    public static let limit = 64

    /// Whether `bytes` is UTF-8 JSON text (no NUL byte, no UTF-16 byte-order mark) that nests
    /// arrays and objects at most `limit` deep (brackets inside strings do not count). Total: any
    /// bytes give an answer.
    public static func isShallow(_ bytes: some Sequence<UInt8>, limit: Int = JSONNesting.limit) -> Bool {
        var depth = 0
        var inString = false
        var escaped = false
        var first = true
        for byte in bytes {
            if byte == 0 { return false }
            if first {
                first = false
                // FE FF or FF FE: a UTF-16 (or UTF-32) byte-order mark; neither byte is UTF-8.
                if byte == 0xFE || byte == 0xFF { return false }
            }
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""):
                inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > limit { return false }
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                depth = max(0, depth - 1)
            default:
                break
            }
        }
        return true
    }

    /// Why `decode` refused JSON text: too deep to decode safely, or not a `T`.
    public struct Refusal: Error, CustomStringConvertible {
        public let description: String
    }

    /// Decodes `text` as a `T` once `isShallow` accepts it: JSON a user or a peer gives that
    /// no other path checks (a command line's argument).
    public static func decode<T: Decodable>(_ type: T.Type, from text: String) throws(Refusal) -> T {
        guard isShallow(text.utf8) else {
            throw Refusal(description: "it is not UTF-8 JSON nesting arrays and objects at most \(limit) deep")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(text.utf8))
        } catch {
            throw Refusal(description: "\(error)")
        }
    }
}
