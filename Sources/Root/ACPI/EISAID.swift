/// Compressed EISA IDs, the 32-bit integer form of "AAA####" PNP IDs that `EisaId()` produces in
/// ASL (ACPI 6.4 §6.1.5 "_HID"; §19.6.35 "EISAID").
///
/// The three letters take 5 bits each (letter - 0x40) in a big-endian 16-bit word, the four hex
/// digits form a big-endian 16-bit word after it, and AML stores the 4 bytes as a little-endian
/// DWord: "PNP0501" is 0x0105D041.
public enum EISAID {
    /// The compressed value of `id`.
    /// - Throws: `.unencodable` unless `id` is three uppercase letters and four hex digits.
    public static func encode(_ id: String) throws(ACPIError) -> UInt32 {
        let bytes = Array(id.utf8)
        guard bytes.count == 7, bytes[0..<3].allSatisfy({ (0x41...0x5A).contains($0) }) else {
            throw .unencodable("EISA ID \"\(id)\" is not three uppercase letters and four hex digits")
        }
        var product: UInt16 = 0
        for byte in bytes[3...] {
            guard let digit = hexValue(byte) else {
                throw .unencodable("EISA ID \"\(id)\" is not three uppercase letters and four hex digits")
            }
            product = product << 4 | UInt16(digit)
        }
        let vendor = UInt16(bytes[0] - 0x40) << 10 | UInt16(bytes[1] - 0x40) << 5 | UInt16(bytes[2] - 0x40)
        let stored: [UInt8] = [UInt8(vendor >> 8), UInt8(vendor & 0xFF), UInt8(product >> 8), UInt8(product & 0xFF)]
        return stored.reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    }

    /// The "AAA####" spelling of a compressed value; letters outside A-Z decode as-is.
    public static func decode(_ value: UInt32) -> String {
        let vendor = UInt16(value & 0xFF) << 8 | UInt16((value >> 8) & 0xFF)
        let product = UInt16((value >> 16) & 0xFF) << 8 | UInt16(value >> 24)
        let letters = [(vendor >> 10) & 0x1F, (vendor >> 5) & 0x1F, vendor & 0x1F].map { UInt8($0) + 0x40 }
        let digits = [12, 8, 4, 0].map { shift in Array("0123456789ABCDEF".utf8)[Int((product >> shift) & 0xF)] }
        return String(decoding: letters + digits, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x41...0x46: byte - 0x41 + 10
        default: nil
        }
    }
}
