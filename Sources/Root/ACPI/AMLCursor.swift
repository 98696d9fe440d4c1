import HyperV

/// Reads AML primitives from a byte array, never past `end`, turning every inconsistency into
/// an `AMLDecodeError`.
struct AMLCursor {
    let bytes: [UInt8]
    var position: Int
    let depthLimit: Int

    /// Largest Buffer the decoder will materialise; a bigger BufferSize is treated as hostile.
    static let maximumBufferSize = 1 << 20

    init(_ bytes: [UInt8], from position: Int = 0, depthLimit: Int) {
        self.bytes = bytes
        self.position = position
        self.depthLimit = depthLimit
    }

    var isAtEnd: Bool { position >= bytes.count }

    func error(_ reason: String, at offset: Int? = nil) -> AMLDecodeError {
        AMLDecodeError(offset: offset ?? position, reason: reason)
    }

    mutating func byte(end: Int) throws(AMLDecodeError) -> UInt8 {
        guard position < end, position < bytes.count else { throw error("unexpected end of data") }
        defer { position += 1 }
        return bytes[position]
    }

    func peek(end: Int) -> UInt8? {
        position < end && position < bytes.count ? bytes[position] : nil
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type, end: Int) throws(AMLDecodeError) -> T {
        let size = T.bitWidth / 8
        guard end - position >= size, let value = bytes.littleEndian(T.self, at: position) else {
            throw error("unexpected end of data in a \(size)-byte integer")
        }
        position += size
        return value
    }

    /// Reads a PkgLength and returns the offset its package ends at, which must lie within `end`.
    mutating func packageEnd(end: Int) throws(AMLDecodeError) -> Int {
        let start = position
        let lead = try byte(end: end)
        let extraBytes = Int(lead >> 6)
        var length = Int(lead & 0x3F)
        if extraBytes > 0 {
            guard lead & 0x30 == 0 else {
                throw error("PkgLength lead byte 0x\(String(lead, radix: 16)) sets reserved bits", at: start)
            }
            length = Int(lead & 0x0F)
            for index in 0..<extraBytes { length |= Int(try byte(end: end)) << (4 + 8 * index) }
        }
        let packageEnd = start + length
        guard packageEnd >= position, packageEnd <= end else {
            throw error("PkgLength \(length) does not fit its enclosing object", at: start)
        }
        return packageEnd
    }

    mutating func nameString(end: Int) throws(AMLDecodeError) -> AMLNameString {
        var isAbsolute = false
        var parents = 0
        if peek(end: end) == AMLOpcode.rootChar {
            isAbsolute = true
            position += 1
        } else {
            while peek(end: end) == AMLOpcode.parentPrefix {
                parents += 1
                position += 1
            }
        }
        let count: Int
        switch try byte(end: end) {
        case AMLOpcode.nullName: count = 0
        case AMLOpcode.dualNamePrefix: count = 2
        case AMLOpcode.multiNamePrefix: count = Int(try byte(end: end))
        default:
            position -= 1
            count = 1
        }
        var segments: [String] = []
        for _ in 0..<count {
            let start = position
            let characters = [try byte(end: end), try byte(end: end), try byte(end: end), try byte(end: end)]
            guard AMLNameString.isLeadCharacter(characters[0]),
                  characters.dropFirst().allSatisfy(AMLNameString.isNameCharacter)
            else { throw error("invalid name segment", at: start) }
            segments.append(String(decoding: characters, as: UTF8.self))
        }
        return AMLNameString(isAbsolute: isAbsolute, parentPrefixes: parents, segments: segments)
    }

    /// A data object: an integer, string, buffer or package.
    mutating func dataObject(depth: Int, end: Int? = nil) throws(AMLDecodeError) -> AMLValue {
        let end = end ?? bytes.count
        guard depth < depthLimit else { throw error("objects nest deeper than \(depthLimit)") }
        let start = position
        switch try byte(end: end) {
        case AMLOpcode.zero: return .integer(0)
        case AMLOpcode.one: return .integer(1)
        case AMLOpcode.ones: return .integer(.max)
        case AMLOpcode.bytePrefix: return .integer(UInt64(try integer(UInt8.self, end: end)))
        case AMLOpcode.wordPrefix: return .integer(UInt64(try integer(UInt16.self, end: end)))
        case AMLOpcode.dwordPrefix: return .integer(UInt64(try integer(UInt32.self, end: end)))
        case AMLOpcode.qwordPrefix: return .integer(try integer(UInt64.self, end: end))
        case AMLOpcode.stringPrefix:
            var characters: [UInt8] = []
            while true {
                let character = try byte(end: end)
                if character == 0 { break }
                guard character <= 0x7F else { throw error("non-ASCII byte in a string", at: position - 1) }
                characters.append(character)
            }
            return .string(String(decoding: characters, as: UTF8.self))
        case AMLOpcode.buffer:
            let bufferEnd = try packageEnd(end: end)
            guard case .integer(let declared) = try dataObject(depth: depth + 1, end: bufferEnd) else {
                throw error("BufferSize is not a constant integer", at: start)
            }
            guard declared <= UInt64(Self.maximumBufferSize) else {
                throw error("BufferSize \(declared) is implausibly large", at: start)
            }
            var contents = Array(bytes[position..<bufferEnd])
            if Int(declared) > contents.count { contents += [UInt8].zeros(Int(declared) - contents.count) }
            position = bufferEnd
            return .buffer(contents)
        case AMLOpcode.package:
            let packageEnd = try packageEnd(end: end)
            let declared = Int(try byte(end: packageEnd))
            var elements: [AMLValue] = []
            while position < packageEnd {
                guard elements.count < declared else { throw error("more Package elements than NumElements") }
                if let lead = peek(end: packageEnd), Self.startsName(lead) {
                    elements.append(.reference(try nameString(end: packageEnd).description))
                } else {
                    elements.append(try dataObject(depth: depth + 1, end: packageEnd))
                }
            }
            return .package(elements)
        case let opcode:
            throw error("unsupported data object opcode 0x\(String(opcode, radix: 16))", at: start)
        }
    }

    static func startsName(_ byte: UInt8) -> Bool {
        AMLNameString.isLeadCharacter(byte) || byte == AMLOpcode.rootChar || byte == AMLOpcode.parentPrefix
            || byte == AMLOpcode.dualNamePrefix || byte == AMLOpcode.multiNamePrefix
    }
}
