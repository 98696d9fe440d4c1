import HyperV

// Internal helpers shared by every channel message parser and serializer
// (Docs/hyperv-interface.md §6.1).

/// Checked field access for a payload whose type and size were already validated.
struct MessageDecoder {
    let payload: [UInt8]
    let type: ChannelMessageType

    /// Validates the size bounds and the msgtype of `payload`.
    init(_ payload: [UInt8], expecting type: ChannelMessageType, minimumSize: Int) throws(VMBusError) {
        guard payload.count <= VMBusConstants.maximumMessagePayload else {
            throw .oversized(size: payload.count)
        }
        guard let found = ChannelMessageHeader.messageType(of: payload) else {
            throw .truncated(type, size: payload.count, minimum: minimumSize)
        }
        guard found == type else { throw .unexpectedType(expected: type, found: found) }
        guard payload.count >= minimumSize else {
            throw .truncated(type, size: payload.count, minimum: minimumSize)
        }
        self.payload = payload
        self.type = type
    }

    func read<T: FixedWidthInteger>(_: T.Type, at offset: Int) throws(VMBusError) -> T {
        guard let value = payload.littleEndian(T.self, at: offset) else {
            throw .truncated(type, size: payload.count, minimum: offset + T.bitWidth / 8)
        }
        return value
    }

    func guid(at offset: Int) throws(VMBusError) -> GUID {
        guard offset >= 0, offset <= payload.count - GUID.size,
            let guid = GUID(wireBytes: Array(payload[offset..<(offset + GUID.size)]))
        else { throw .truncated(type, size: payload.count, minimum: offset + GUID.size) }
        return guid
    }

    func bytes(at offset: Int, count: Int) throws(VMBusError) -> [UInt8] {
        guard offset >= 0, count >= 0, offset <= payload.count - count else {
            throw .truncated(type, size: payload.count, minimum: offset + count)
        }
        return Array(payload[offset..<(offset + count)])
    }

    /// Up to `limit` u64 words from `offset` to the end of the payload (a partial last word is ignored).
    func words(from offset: Int, limit: Int) -> [UInt64] {
        guard offset >= 0, offset <= payload.count else { return [] }
        let count = min((payload.count - offset) / 8, max(limit, 0))
        var words: [UInt64] = []
        words.reserveCapacity(count)
        for index in 0..<count {
            guard let word = payload.littleEndian(UInt64.self, at: offset + index * 8) else { break }
            words.append(word)
        }
        return words
    }
}

/// Builds a payload of a known size for a message this side created.
struct MessageEncoder {
    var bytes: [UInt8]

    init(_ type: ChannelMessageType, size: Int) {
        bytes = .zeros(size)
        bytes.storeLittleEndian(type.rawValue, at: 0)
    }

    mutating func store<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        bytes.storeLittleEndian(value, at: offset)
    }

    mutating func store(_ guid: GUID, at offset: Int) {
        guid.store(into: &bytes, at: offset)
    }

    /// Copies up to `count` bytes of `source` to `offset`; a shorter source leaves zeros.
    mutating func store(_ source: [UInt8], at offset: Int, count: Int) {
        for index in 0..<min(count, source.count) { bytes[offset + index] = source[index] }
    }

    mutating func store(words: [UInt64], at offset: Int) {
        for (index, word) in words.enumerated() { bytes.storeLittleEndian(word, at: offset + index * 8) }
    }
}
