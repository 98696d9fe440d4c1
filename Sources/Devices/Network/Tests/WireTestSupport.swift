/// Bytes from hex text; whitespace is ignored ("01 00 00 00" → [1, 0, 0, 0]).
func hexBytes(_ text: String) -> [UInt8] {
    let digits = text.filter { !$0.isWhitespace }.map { $0 }
    var bytes: [UInt8] = []
    var index = 0
    while index + 1 < digits.count {
        bytes.append(UInt8(String(digits[index...index + 1]), radix: 16)!)
        index += 2
    }
    return bytes
}

/// `bytes` zero-padded to `count`.
func padded(_ bytes: [UInt8], to count: Int) -> [UInt8] {
    bytes + [UInt8](repeating: 0, count: max(count - bytes.count, 0))
}

func u32le(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
func u16le(_ value: UInt16) -> [UInt8] { [UInt8(value & 0xFF), UInt8(value >> 8)] }
