/// An AML NameString: an optional root or parent prefixes, then 4-character name segments
/// (ACPI 6.4 §20.2.2 "Name Objects Encoding").
///
/// Written as in ASL: `\_SB.VMOD`, `^PCI0`, `_HID`; short segments are padded with `_`.
public struct AMLNameString: Hashable, Sendable, CustomStringConvertible {
    /// Whether the name starts at the root (`\`).
    public var isAbsolute: Bool
    /// How many `^` prefixes precede the segments (0 when absolute).
    public var parentPrefixes: Int
    /// The segments, each exactly 4 characters.
    public var segments: [String]

    /// Parses an ASL-style path.
    /// - Throws: `.invalidName` for an empty segment, a segment longer than 4 characters or
    ///   with characters outside A-Z, 0-9 and `_`, a segment starting with a digit, or more than 255 segments.
    public init(_ path: String) throws(ACPIError) {
        var rest = Substring(path)
        isAbsolute = rest.first == "\\"
        if isAbsolute { rest = rest.dropFirst() }
        parentPrefixes = 0
        while !isAbsolute, rest.first == "^" {
            parentPrefixes += 1
            rest = rest.dropFirst()
        }
        segments = []
        if !rest.isEmpty {
            for part in rest.split(separator: ".", omittingEmptySubsequences: false) {
                guard let segment = Self.segment(part) else { throw .invalidName(path) }
                segments.append(segment)
            }
        }
        guard segments.count <= 255, isAbsolute || parentPrefixes > 0 || !segments.isEmpty else {
            throw .invalidName(path)
        }
    }

    /// A name from already-validated parts.
    init(isAbsolute: Bool, parentPrefixes: Int, segments: [String]) {
        self.isAbsolute = isAbsolute
        self.parentPrefixes = parentPrefixes
        self.segments = segments
    }

    /// `part` padded to a 4-character segment, or `nil` if it is not a valid one.
    static func segment(_ part: Substring) -> String? {
        let bytes = Array(part.utf8)
        guard (1...4).contains(bytes.count), isLeadCharacter(bytes[0]),
              bytes.dropFirst().allSatisfy(isNameCharacter)
        else { return nil }
        return String(part) + String(repeating: "_", count: 4 - bytes.count)
    }

    static func isLeadCharacter(_ byte: UInt8) -> Bool { (0x41...0x5A).contains(byte) || byte == 0x5F }
    static func isNameCharacter(_ byte: UInt8) -> Bool { isLeadCharacter(byte) || (0x30...0x39).contains(byte) }

    /// The AML encoding: prefixes, then NullName, one segment, DualNamePrefix or MultiNamePrefix.
    public var encoded: [UInt8] {
        var bytes: [UInt8] = isAbsolute ? [AMLOpcode.rootChar]
            : [UInt8](repeating: AMLOpcode.parentPrefix, count: parentPrefixes)
        switch segments.count {
        case 0: bytes.append(AMLOpcode.nullName)
        case 1: break
        case 2: bytes.append(AMLOpcode.dualNamePrefix)
        default: bytes += [AMLOpcode.multiNamePrefix, UInt8(truncatingIfNeeded: segments.count)]
        }
        for segment in segments { bytes += Array(segment.utf8) }
        return bytes
    }

    /// The ASL spelling, with padded segments: `\_SB_.VMOD`.
    public var description: String {
        (isAbsolute ? "\\" : String(repeating: "^", count: parentPrefixes)) + segments.joined(separator: ".")
    }
}
