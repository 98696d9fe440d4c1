import HyperV

/// An encoder for the AML subset a minimal DSDT needs (ACPI 6.4 §20 "ACPI Machine Language
/// Specification"). Each function returns the bytes of one term; bodies are lists of terms.
///
/// Names are written as in ASL (`\_SB.VMOD`, `_HID`) and validated; integers pick the shortest
/// encoding (ZeroOp, OneOp, OnesOp, then Byte/Word/DWord/QWord prefixes).
public enum AML {
    /// The largest value a PkgLength can hold (28 bits).
    public static let maximumPackageLength = 0x0FFF_FFFF

    /// The PkgLength for `contentLength` bytes that follow it. The encoded value counts the
    /// PkgLength's own 1-4 bytes; 1 byte holds values up to 63, 2 up to 2^12-1, 3 up to 2^20-1,
    /// 4 up to 2^28-1 (ACPI 6.4 §20.2.4 "Package Length Encoding").
    /// - Throws: `.unencodable` for negative lengths or lengths beyond 28 bits.
    public static func packageLength(contentLength: Int) throws(ACPIError) -> [UInt8] {
        guard contentLength >= 0 else { throw .unencodable("negative package length") }
        if contentLength + 1 <= 0x3F { return [UInt8(contentLength + 1)] }
        for extraBytes in 1...3 {
            let total = contentLength + 1 + extraBytes
            guard total <= (1 << (4 + 8 * extraBytes)) - 1 else { continue }
            var bytes = [UInt8(extraBytes << 6) | UInt8(total & 0x0F)]
            for index in 0..<extraBytes { bytes.append(UInt8(truncatingIfNeeded: total >> (4 + 8 * index))) }
            return bytes
        }
        throw .unencodable("package of \(contentLength) bytes exceeds the 28-bit PkgLength")
    }

    /// A NameString for an ASL path.
    public static func nameString(_ path: String) throws(ACPIError) -> [UInt8] {
        try AMLNameString(path).encoded
    }

    /// `Scope(path) { terms }`.
    public static func scope(_ path: String, _ terms: [[UInt8]]) throws(ACPIError) -> [UInt8] {
        try packaged([AMLOpcode.scope], try nameString(path) + terms.flatMap { $0 })
    }

    /// `Device(path) { terms }`.
    public static func device(_ path: String, _ terms: [[UInt8]]) throws(ACPIError) -> [UInt8] {
        try packaged([AMLOpcode.extendedPrefix, AMLOpcode.device], try nameString(path) + terms.flatMap { $0 })
    }

    /// `Name(path, object)`.
    public static func name(_ path: String, _ object: [UInt8]) throws(ACPIError) -> [UInt8] {
        [AMLOpcode.name] + (try nameString(path)) + object
    }

    /// `Method(path, arguments, serialized) { terms }`.
    /// - Throws: `.unencodable` for more than 7 arguments, `.invalidName` for a bad path.
    public static func method(
        _ path: String, arguments: Int = 0, serialized: Bool = false, _ terms: [[UInt8]]
    ) throws(ACPIError) -> [UInt8] {
        guard (0...7).contains(arguments) else { throw .unencodable("a method takes at most 7 arguments") }
        let flags = UInt8(arguments) | (serialized ? 0x08 : 0)
        return try packaged([AMLOpcode.method], try nameString(path) + [flags] + terms.flatMap { $0 })
    }

    /// `Return(object)`.
    public static func `return`(_ object: [UInt8]) -> [UInt8] {
        [AMLOpcode.return] + object
    }

    /// ZeroOp.
    public static let zero: [UInt8] = [AMLOpcode.zero]
    /// OneOp.
    public static let one: [UInt8] = [AMLOpcode.one]
    /// OnesOp: all bits set (64 of them in a revision 2 DSDT).
    public static let ones: [UInt8] = [AMLOpcode.ones]

    /// An integer in its shortest encoding.
    public static func integer(_ value: UInt64) -> [UInt8] {
        var bytes: [UInt8]
        switch value {
        case 0: return zero
        case 1: return one
        case .max: return ones
        case ...0xFF: bytes = [AMLOpcode.bytePrefix, UInt8(value)]
        case ...0xFFFF:
            bytes = [AMLOpcode.wordPrefix]
            bytes.appendLittleEndian(UInt16(value))
        case ...0xFFFF_FFFF:
            bytes = [AMLOpcode.dwordPrefix]
            bytes.appendLittleEndian(UInt32(value))
        default:
            bytes = [AMLOpcode.qwordPrefix]
            bytes.appendLittleEndian(value)
        }
        return bytes
    }

    /// A string literal.
    /// - Throws: `.unencodable` for characters outside ASCII 0x01-0x7F.
    public static func string(_ value: String) throws(ACPIError) -> [UInt8] {
        let bytes = Array(value.utf8)
        guard bytes.allSatisfy({ (0x01...0x7F).contains($0) }) else {
            throw .unencodable("string \"\(value)\" is not NUL-free ASCII")
        }
        return [AMLOpcode.stringPrefix] + bytes + [0]
    }

    /// `Package() { elements }`.
    /// - Throws: `.unencodable` for more than 255 elements.
    public static func package(_ elements: [[UInt8]]) throws(ACPIError) -> [UInt8] {
        guard elements.count <= 255 else { throw .unencodable("a Package holds at most 255 elements") }
        return try packaged([AMLOpcode.package], [UInt8(elements.count)] + elements.flatMap { $0 })
    }

    /// `Buffer() { bytes }`, sized by its contents.
    public static func buffer(_ bytes: [UInt8]) throws(ACPIError) -> [UInt8] {
        try packaged([AMLOpcode.buffer], integer(UInt64(bytes.count)) + bytes)
    }

    /// `EisaId("AAA####")`: the compressed ID as a DWord.
    public static func eisaID(_ id: String) throws(ACPIError) -> [UInt8] {
        var bytes = [AMLOpcode.dwordPrefix]
        bytes.appendLittleEndian(try EISAID.encode(id))
        return bytes
    }

    /// `ResourceTemplate() { descriptors }`: a Buffer ending in an end tag.
    public static func resourceTemplate(_ descriptors: [ResourceDescriptor]) throws(ACPIError) -> [UInt8] {
        try buffer(ResourceTemplate.encode(descriptors))
    }

    /// `opcode PkgLength content`.
    private static func packaged(_ opcode: [UInt8], _ content: [UInt8]) throws(ACPIError) -> [UInt8] {
        opcode + (try packageLength(contentLength: content.count)) + content
    }
}
