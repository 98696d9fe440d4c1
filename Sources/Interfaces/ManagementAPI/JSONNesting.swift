/// A pre-check of JSON text before it reaches `JSONDecoder`: arrays and objects nested at most
/// `limit` deep. Configurations and requests need a few levels; Foundation's decoder traps on
/// some inputs nested past its own limit of 512 (an unterminated run of 513 `[`), so the root
/// and the client refuse anything deeper than `limit` before decoding.
public enum JSONNesting {
    /// The deepest nesting accepted.
    public static let limit = 64

    /// Whether `bytes` nests arrays and objects at most `limit` deep (brackets inside strings do
    /// not count). Total: any bytes give an answer.
    public static func isShallow(_ bytes: some Sequence<UInt8>, limit: Int = JSONNesting.limit) -> Bool {
        var depth = 0
        var inString = false
        var escaped = false
        for byte in bytes {
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
}
