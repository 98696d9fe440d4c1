import HyperV

/// Decodes the declarations of a DSDT or SSDT into a namespace tree: Scope, Device, Name and
/// Method, with Name values read back and Method bodies kept as bytes (ACPI 6.4 §20.2).
///
/// Meant for tests and diagnostics of tables this module built, but safe on any input: every
/// length is checked, nesting is bounded, and anything outside the subset is an error.
public enum AMLDecoder {
    /// The deepest nesting of Scope/Device/Package accepted.
    public static let maximumDepth = 64

    /// Decodes a whole table: checks the header's length, then decodes the AML after it.
    /// - Throws: `AMLDecodeError` for a bad header or undecodable AML.
    public static func decode(table: [UInt8]) throws(AMLDecodeError) -> AMLNode {
        guard let length = table.littleEndian(UInt32.self, at: TableHeader.lengthOffset),
              Int(length) >= TableHeader.size, Int(length) <= table.count
        else { throw AMLDecodeError(offset: 0, reason: "table header is truncated or its length is wrong") }
        guard TableHeader.checksum(of: table[0..<Int(length)]) == 0 else {
            throw AMLDecodeError(offset: TableHeader.checksumOffset, reason: "table checksum is wrong")
        }
        return try decode(Array(table[TableHeader.size..<Int(length)]))
    }

    /// Decodes a TermList (a table body) into a tree whose root is `\`.
    /// - Throws: `AMLDecodeError` for truncated or unsupported AML.
    public static func decode(_ aml: [UInt8]) throws(AMLDecodeError) -> AMLNode {
        var root = AMLNode(segment: "", kind: .root)
        var cursor = AMLCursor(aml, depthLimit: maximumDepth)
        try termList(&cursor, end: aml.count, scope: [], into: &root, depth: 0)
        return root
    }

    /// Decodes the PkgLength at `offset`: its value (which counts its own bytes) and its size.
    /// - Throws: `AMLDecodeError` if it is truncated, sets reserved bits or exceeds the input.
    public static func packageLength(
        in bytes: [UInt8], at offset: Int
    ) throws(AMLDecodeError) -> (value: Int, byteCount: Int) {
        guard offset >= 0, offset < bytes.count else { throw AMLDecodeError(offset: offset, reason: "no PkgLength here") }
        var cursor = AMLCursor(bytes, from: offset, depthLimit: maximumDepth)
        let end = try cursor.packageEnd(end: bytes.count)
        return (end - offset, cursor.position - offset)
    }

    private static func termList(
        _ cursor: inout AMLCursor, end: Int, scope: [String], into root: inout AMLNode, depth: Int
    ) throws(AMLDecodeError) {
        guard depth < maximumDepth else { throw cursor.error("scopes nest deeper than \(maximumDepth)") }
        while cursor.position < end {
            let start = cursor.position
            switch try cursor.byte(end: end) {
            case AMLOpcode.scope:
                let scopeEnd = try cursor.packageEnd(end: end)
                let path = try resolve(try cursor.nameString(end: scopeEnd), in: scope, at: start)
                root.declare(path[...], kind: .scope)
                try termList(&cursor, end: scopeEnd, scope: path, into: &root, depth: depth + 1)
            case AMLOpcode.extendedPrefix:
                guard try cursor.byte(end: end) == AMLOpcode.device else {
                    throw cursor.error("unsupported extended opcode", at: start)
                }
                let deviceEnd = try cursor.packageEnd(end: end)
                let path = try resolve(try cursor.nameString(end: deviceEnd), in: scope, at: start)
                guard !path.isEmpty else { throw cursor.error("a Device cannot be the root", at: start) }
                root.declare(path[...], kind: .device)
                try termList(&cursor, end: deviceEnd, scope: path, into: &root, depth: depth + 1)
            case AMLOpcode.name:
                let path = try resolve(try cursor.nameString(end: end), in: scope, at: start)
                guard !path.isEmpty else { throw cursor.error("a Name needs a name", at: start) }
                let value = try cursor.dataObject(depth: depth + 1, end: end)
                root.declare(path[...], kind: .name(value))
            case AMLOpcode.method:
                let methodEnd = try cursor.packageEnd(end: end)
                let path = try resolve(try cursor.nameString(end: methodEnd), in: scope, at: start)
                guard !path.isEmpty else { throw cursor.error("a Method needs a name", at: start) }
                let flags = try cursor.byte(end: methodEnd)
                let method = AMLMethod(argumentCount: Int(flags & 0x7), isSerialized: flags & 0x8 != 0,
                                       syncLevel: Int(flags >> 4), body: Array(cursor.bytes[cursor.position..<methodEnd]))
                cursor.position = methodEnd
                root.declare(path[...], kind: .method(method))
            case let opcode:
                throw cursor.error("unsupported opcode 0x\(String(opcode, radix: 16)) in a TermList", at: start)
            }
        }
    }

    /// The absolute segments `name` declares when it appears inside `scope`.
    private static func resolve(
        _ name: AMLNameString, in scope: [String], at offset: Int
    ) throws(AMLDecodeError) -> [String] {
        if name.isAbsolute { return name.segments }
        guard name.parentPrefixes <= scope.count else {
            throw AMLDecodeError(offset: offset, reason: "\(name) climbs above the root")
        }
        return Array(scope.dropLast(name.parentPrefixes)) + name.segments
    }
}
