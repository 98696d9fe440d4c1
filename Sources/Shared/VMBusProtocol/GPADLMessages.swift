// Guest physical address descriptor lists (GPADLs): creation and teardown
// (Docs/hyperv-interface.md §7).

/// GPADL_HEADER (8), guest → host: the first message describing a GPADL
/// (Docs/hyperv-interface.md §7.1).
///
/// Layout: child_relid @8, gpadl @12, range_buflen u16 @16, rangecount u16 @18, then the range
/// buffer: byte_count u32 @20, byte_offset u32 @24, pfn[] u64 @28. `range_buflen` covers the
/// whole range buffer across the header and every GPADL_BODY (8 + 8 × PFNs for one range), so
/// only the first PFNs travel here; the rest follow in bodies. Linux always sends one range.
public struct GPADLHeader: ChannelMessageRepresentable {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.gpadlHeader
    /// The fixed fields plus the first range's byte_count and byte_offset.
    public static let minimumSize = 28
    /// Offset of the first PFN.
    public static let pfnOffset = 28

    /// The channel the GPADL belongs to (@8).
    public var childRelID: UInt32
    /// The guest-chosen GPADL handle (@12).
    public var gpadl: UInt32
    /// Size of the whole range buffer in bytes (@16).
    public var rangeBufferLength: UInt16
    /// Number of ranges (@18); Linux sends 1.
    public var rangeCount: UInt16
    /// The first range's length in bytes (@20).
    public var byteCount: UInt32
    /// The first range's offset into its first page (@24).
    public var byteOffset: UInt32
    /// The PFNs carried in this message: as many as both the payload and `rangeBufferLength` hold,
    /// at most 26. With more than one range, later range headers appear here as raw words.
    public var pfns: [UInt64]

    /// Creates the message from its fields; keep `pfns` at 26 or fewer.
    public init(
        childRelID: UInt32, gpadl: UInt32, rangeBufferLength: UInt16, rangeCount: UInt16 = 1,
        byteCount: UInt32, byteOffset: UInt32, pfns: [UInt64]
    ) {
        self.childRelID = childRelID
        self.gpadl = gpadl
        self.rangeBufferLength = rangeBufferLength
        self.rangeCount = rangeCount
        self.byteCount = byteCount
        self.byteOffset = byteOffset
        self.pfns = pfns
    }

    /// The range-buffer length for one range of `pfnCount` pages, or `nil` if it exceeds u16.
    public static func rangeBufferLength(pfnCount: Int) -> UInt16? {
        guard pfnCount >= 0, pfnCount <= (Int(UInt16.max) - 8) / 8 else { return nil }
        return UInt16(8 + pfnCount * 8)
    }

    /// The messages that create a GPADL of whole `pfns` pages, split as Linux splits it: a
    /// GPADL_HEADER with the first 26 PFNs, then GPADL_BODY messages with 28 each (msgnumber 0).
    /// `nil` if the page list does not fit one range.
    public static func messages(gpadl: UInt32, childRelID: UInt32, pfns: [UInt64]) -> [ChannelMessage]? {
        guard let length = rangeBufferLength(pfnCount: pfns.count),
              pfns.count <= Int(UInt32.max) / VMBusConstants.pageSize else { return nil }
        let first = Array(pfns.prefix(VMBusConstants.gpadlHeaderMaximumPFNs))
        var messages: [ChannelMessage] = [.gpadlHeader(GPADLHeader(
            childRelID: childRelID, gpadl: gpadl, rangeBufferLength: length,
            byteCount: UInt32(pfns.count * VMBusConstants.pageSize), byteOffset: 0, pfns: first))]
        var rest = pfns.dropFirst(first.count)
        while !rest.isEmpty {
            let chunk = Array(rest.prefix(VMBusConstants.gpadlBodyMaximumPFNs))
            rest = rest.dropFirst(chunk.count)
            messages.append(.gpadlBody(GPADLBody(messageNumber: 0, gpadl: gpadl, pfns: chunk)))
        }
        return messages
    }

    /// PFNs the whole range buffer announces for a single range: (range_buflen − 8) / 8.
    public var announcedPFNCount: Int { max(Int(rangeBufferLength) - 8, 0) / 8 }

    /// PFNs the first range needs: ⌈(byteOffset + byteCount) / 4096⌉. The GPADL is complete once
    /// this many have arrived across the header and its bodies (Docs/hyperv-interface.md §7.1).
    public var requiredPFNCount: Int {
        VMBusConstants.pageCount(byteOffset: byteOffset, byteCount: byteCount)
    }

    /// Parses `payload`, rejecting a foreign msgtype, a short payload, or one over 240 bytes.
    public init(parsing payload: [UInt8]) throws(VMBusError) {
        let decoder = try MessageDecoder(payload, expecting: Self.messageType, minimumSize: Self.minimumSize)
        childRelID = try decoder.read(UInt32.self, at: 8)
        gpadl = try decoder.read(UInt32.self, at: 12)
        rangeBufferLength = try decoder.read(UInt16.self, at: 16)
        rangeCount = try decoder.read(UInt16.self, at: 18)
        byteCount = try decoder.read(UInt32.self, at: 20)
        byteOffset = try decoder.read(UInt32.self, at: 24)
        guard rangeBufferLength >= 8 else {
            throw .invalidField(Self.messageType, "rangeBufferLength below one range header")
        }
        pfns = decoder.words(from: Self.pfnOffset, limit: (Int(rangeBufferLength) - 8) / 8)
    }

    /// The serialized payload, header included, at its exact wire size.
    public var bytes: [UInt8] {
        precondition(pfns.count <= VMBusConstants.gpadlHeaderMaximumPFNs, "GPADL_HEADER holds at most 26 PFNs")
        var encoder = MessageEncoder(Self.messageType, size: Self.pfnOffset + pfns.count * 8)
        encoder.store(childRelID, at: 8)
        encoder.store(gpadl, at: 12)
        encoder.store(rangeBufferLength, at: 16)
        encoder.store(rangeCount, at: 18)
        encoder.store(byteCount, at: 20)
        encoder.store(byteOffset, at: 24)
        encoder.store(words: pfns, at: Self.pfnOffset)
        return encoder.bytes
    }
}

/// GPADL_BODY (9), guest → host: more PFNs of a GPADL (Docs/hyperv-interface.md §7.1).
///
/// Layout: msgnumber @8 (Linux leaves it 0), gpadl @12, pfn[] u64 @16 to the end of the payload.
public struct GPADLBody: ChannelMessageRepresentable {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.gpadlBody
    /// The smallest payload the parser accepts.
    public static let minimumSize = 16
    /// Offset of the first PFN.
    public static let pfnOffset = 16

    /// msgnumber @8; unreliable (always 0 from Linux), so count PFNs instead.
    public var messageNumber: UInt32
    /// The GPADL handle (@12).
    public var gpadl: UInt32
    /// The PFNs in this message (at most 28); a partial trailing word is ignored.
    public var pfns: [UInt64]

    /// Creates the message; keep `pfns` at 28 or fewer.
    public init(messageNumber: UInt32 = 0, gpadl: UInt32, pfns: [UInt64]) {
        self.messageNumber = messageNumber
        self.gpadl = gpadl
        self.pfns = pfns
    }

    /// Parses `payload`, rejecting a foreign msgtype, a short payload, or one over 240 bytes.
    public init(parsing payload: [UInt8]) throws(VMBusError) {
        let decoder = try MessageDecoder(payload, expecting: Self.messageType, minimumSize: Self.minimumSize)
        messageNumber = try decoder.read(UInt32.self, at: 8)
        gpadl = try decoder.read(UInt32.self, at: 12)
        pfns = decoder.words(from: Self.pfnOffset, limit: VMBusConstants.gpadlBodyMaximumPFNs)
    }

    /// The serialized payload, header included, at its exact wire size.
    public var bytes: [UInt8] {
        precondition(pfns.count <= VMBusConstants.gpadlBodyMaximumPFNs, "GPADL_BODY holds at most 28 PFNs")
        var encoder = MessageEncoder(Self.messageType, size: Self.pfnOffset + pfns.count * 8)
        encoder.store(messageNumber, at: 8)
        encoder.store(gpadl, at: 12)
        encoder.store(words: pfns, at: Self.pfnOffset)
        return encoder.bytes
    }
}

/// GPADL_CREATED (10), host → guest, 20 bytes: child_relid @8, gpadl @12, creation_status @16
/// (Docs/hyperv-interface.md §7.2). Linux waits for it without a timeout.
public struct GPADLCreated: ChannelMessageRepresentable {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.gpadlCreated
    /// The smallest payload the parser accepts.
    public static let minimumSize = 20
    /// The channel (@8).
    public var childRelID: UInt32
    /// The GPADL handle the guest chose (@12).
    public var gpadl: UInt32
    /// 0 on success (@16).
    public var status: UInt32
    /// Creates the message.
    public init(childRelID: UInt32, gpadl: UInt32, status: UInt32 = 0) {
        self.childRelID = childRelID
        self.gpadl = gpadl
        self.status = status
    }
    /// Parses `payload`, rejecting a foreign msgtype, a short payload, or one over 240 bytes.
    public init(parsing payload: [UInt8]) throws(VMBusError) {
        let decoder = try MessageDecoder(payload, expecting: Self.messageType, minimumSize: Self.minimumSize)
        childRelID = try decoder.read(UInt32.self, at: 8)
        gpadl = try decoder.read(UInt32.self, at: 12)
        status = try decoder.read(UInt32.self, at: 16)
    }
    /// The serialized payload, header included, at its exact wire size.
    public var bytes: [UInt8] {
        var encoder = MessageEncoder(Self.messageType, size: Self.minimumSize)
        encoder.store(childRelID, at: 8)
        encoder.store(gpadl, at: 12)
        encoder.store(status, at: 16)
        return encoder.bytes
    }
}

/// GPADL_TEARDOWN (11), guest → host, 16 bytes: child_relid @8, gpadl @12
/// (Docs/hyperv-interface.md §7.3).
public struct GPADLTeardown: ChannelMessageRepresentable {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.gpadlTeardown
    /// The smallest payload the parser accepts.
    public static let minimumSize = 16
    /// The channel (@8).
    public var childRelID: UInt32
    /// The GPADL handle (@12).
    public var gpadl: UInt32
    /// Creates the message.
    public init(childRelID: UInt32, gpadl: UInt32) {
        self.childRelID = childRelID
        self.gpadl = gpadl
    }
    /// Parses `payload`, rejecting a foreign msgtype, a short payload, or one over 240 bytes.
    public init(parsing payload: [UInt8]) throws(VMBusError) {
        let decoder = try MessageDecoder(payload, expecting: Self.messageType, minimumSize: Self.minimumSize)
        childRelID = try decoder.read(UInt32.self, at: 8)
        gpadl = try decoder.read(UInt32.self, at: 12)
    }
    /// The serialized payload, header included, at its exact wire size.
    public var bytes: [UInt8] {
        var encoder = MessageEncoder(Self.messageType, size: Self.minimumSize)
        encoder.store(childRelID, at: 8)
        encoder.store(gpadl, at: 12)
        return encoder.bytes
    }
}

/// GPADL_TORNDOWN (12), host → guest, 12 bytes: gpadl @8 (Docs/hyperv-interface.md §7.3). Linux
/// matches on the handle alone.
public struct GPADLTorndown: ChannelMessageRepresentable {
    /// The msgtype this message carries.
    public static let messageType = ChannelMessageType.gpadlTorndown
    /// The smallest payload the parser accepts.
    public static let minimumSize = 12
    /// The GPADL handle (@8).
    public var gpadl: UInt32
    /// Creates the message.
    public init(gpadl: UInt32) { self.gpadl = gpadl }
    /// Parses `payload`, rejecting a foreign msgtype, a short payload, or one over 240 bytes.
    public init(parsing payload: [UInt8]) throws(VMBusError) {
        let decoder = try MessageDecoder(payload, expecting: Self.messageType, minimumSize: Self.minimumSize)
        gpadl = try decoder.read(UInt32.self, at: 8)
    }
    /// The serialized payload, header included, at its exact wire size.
    public var bytes: [UInt8] {
        var encoder = MessageEncoder(Self.messageType, size: Self.minimumSize)
        encoder.store(gpadl, at: 8)
        return encoder.bytes
    }
}
