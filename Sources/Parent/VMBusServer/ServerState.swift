import HyperV
import VMBusProtocol

/// The server's state as records a parent partition saves with the root and a restarted parent
/// restores from (Docs/architecture.md, "A parent that restarts"): one header record (the
/// connection, the next relid, whether offers were delivered), one record per channel (its offer
/// and state, with its open request), and a GPADL's page list cut into chunks of
/// `ServerState.pagesPerChunk` pages. Every record starts with the format version.
///
/// The records come back from the root, which stores them without looking inside: they are
/// parsed as hostile input, every field checked against the configuration, and any problem is a
/// typed error (then the parent starts the partition's bus afresh).
public enum ServerState {
    /// The format of every record.
    public static let version: UInt16 = 1
    /// The top byte of every key of the server's records (other parent-side services use others).
    public static let owner: UInt64 = 0x01
    /// Pages per GPADL chunk record (32 KiB of page numbers).
    public static let pagesPerChunk = 4096

    enum Kind: UInt64 {
        case header = 1, channel, gpadlChunk
    }

    /// A key: owner (8 bits), kind (8), chunk (16), relid or GPADL handle (32).
    static func key(_ kind: Kind, id: UInt32 = 0, chunk: UInt16 = 0) -> UInt64 {
        owner << 56 | kind.rawValue << 48 | UInt64(chunk) << 32 | UInt64(id)
    }

    /// Whether `key` belongs to the server's records.
    public static func owns(_ key: UInt64) -> Bool { key >> 56 == owner }

    static let headerKey = key(.header)
}

/// A saved record: a key and its bytes (`nil`: the record no longer exists).
public struct ServerStateRecord: Hashable, Sendable {
    public var key: UInt64
    public var bytes: [UInt8]?

    public init(key: UInt64, bytes: [UInt8]?) {
        self.key = key
        self.bytes = bytes
    }
}

/// Why saved records could not be restored.
public enum ServerStateError: Error, Equatable, CustomStringConvertible {
    case missingHeader
    case unsupportedVersion(UInt16)
    case malformed(key: UInt64, String)
    case inconsistent(String)

    public var description: String {
        switch self {
        case .missingHeader: "the saved VMBus state has no header record"
        case .unsupportedVersion(let version): "the saved VMBus state has format \(version), not \(ServerState.version)"
        case .malformed(let key, let reason): "saved VMBus record 0x\(String(key, radix: 16)): \(reason)"
        case .inconsistent(let reason): "the saved VMBus state is inconsistent: \(reason)"
        }
    }
}

// MARK: - Saving

/// What the server's records were at the last save, so each save sends only what changed:
/// header and channel records are compared byte for byte (they are small), GPADLs by a summary,
/// and only the chunks a GPADL's change touched are written again.
public struct ServerStateLedger: Sendable {
    private var header: [UInt8]?
    private var channels: [UInt32: [UInt8]] = [:]
    private var gpadls: [UInt32: GPADLSummary] = [:]

    struct GPADLSummary: Hashable, Sendable {
        var channel: UInt32
        var byteOffset: UInt32
        var byteCount: UInt32
        var created: Bool
        var needed: Int
        var pageCount: Int

        var chunkCount: Int { max(1, (pageCount + ServerState.pagesPerChunk - 1) / ServerState.pagesPerChunk) }
    }

    public init() {}

    /// A ledger that already holds `server`'s state (after a restore, nothing needs saving).
    public init(matching server: VMBusServer) {
        _ = changes(in: server)
    }

    /// The records to save so the saved state equals `server`'s, and remembers them as saved.
    public mutating func changes(in server: VMBusServer) -> [ServerStateRecord] {
        var records: [ServerStateRecord] = []
        let newHeader = Self.header(of: server)
        if newHeader != header {
            records.append(ServerStateRecord(key: ServerState.headerKey, bytes: newHeader))
            header = newHeader
        }

        var seenChannels = Set<UInt32>()
        for relID in server.channels.keys.sorted() {
            guard let channel = server.channels[relID], let bytes = Self.channel(channel) else { continue }
            seenChannels.insert(relID)
            if channels[relID] != bytes {
                records.append(ServerStateRecord(key: ServerState.key(.channel, id: relID), bytes: bytes))
                channels[relID] = bytes
            }
        }
        for relID in channels.keys.sorted() where !seenChannels.contains(relID) {
            records.append(ServerStateRecord(key: ServerState.key(.channel, id: relID), bytes: nil))
            channels[relID] = nil
        }

        for id in server.gpadls.keys.sorted() {
            guard let state = server.gpadls[id] else { continue }
            let summary = Self.summary(state)
            let old = gpadls[id]
            guard old != summary else { continue }
            let gpadl = state.gpadl
            // Chunk 0 carries the summary; later chunks only change where pages were added.
            let firstChanged = old.map { min($0.pageCount, summary.pageCount) / ServerState.pagesPerChunk } ?? 0
            for chunk in 0..<summary.chunkCount where chunk == 0 || chunk >= firstChanged {
                records.append(ServerStateRecord(key: ServerState.key(.gpadlChunk, id: id, chunk: UInt16(chunk)),
                                                 bytes: Self.chunk(chunk, of: gpadl, summary)))
            }
            if let old, old.chunkCount > summary.chunkCount {
                for chunk in summary.chunkCount..<old.chunkCount {
                    records.append(ServerStateRecord(key: ServerState.key(.gpadlChunk, id: id, chunk: UInt16(chunk)), bytes: nil))
                }
            }
            gpadls[id] = summary
        }
        for id in gpadls.keys.sorted() where server.gpadls[id] == nil {
            for chunk in 0..<(gpadls[id]?.chunkCount ?? 0) {
                records.append(ServerStateRecord(key: ServerState.key(.gpadlChunk, id: id, chunk: UInt16(chunk)), bytes: nil))
            }
            gpadls[id] = nil
        }
        return records
    }

    static func summary(_ state: VMBusServer.GPADLState) -> GPADLSummary {
        switch state {
        case .assembling(let gpadl, let needed):
            GPADLSummary(channel: gpadl.channel, byteOffset: gpadl.byteOffset, byteCount: gpadl.byteCount, created: false,
                         needed: needed, pageCount: gpadl.pageNumbers.count)
        case .created(let gpadl):
            GPADLSummary(channel: gpadl.channel, byteOffset: gpadl.byteOffset, byteCount: gpadl.byteCount, created: true,
                         needed: gpadl.pageNumbers.count, pageCount: gpadl.pageNumbers.count)
        }
    }

    static func header(of server: VMBusServer) -> [UInt8] {
        var out: [UInt8] = []
        out.appendLittleEndian(ServerState.version)
        if let connection = server.connection {
            out.append(1)
            out.appendLittleEndian(connection.version.rawValue)
            out.appendLittleEndian(connection.targetVP)
            out.append(connection.sint)
        } else {
            out.append(0)
        }
        out.appendLittleEndian(server.nextRelID)
        out.append(server.offersDelivered ? 1 : 0)
        return out
    }

    /// A channel's record; released channels have none (their relids are free for new offers,
    /// below the header's next relid as above it).
    static func channel(_ channel: VMBusServer.Channel) -> [UInt8]? {
        var out: [UInt8] = []
        out.appendLittleEndian(ServerState.version)
        out += channel.offer.interfaceType.wireBytes
        out += channel.offer.interfaceInstance.wireBytes
        out.appendLittleEndian(channel.offer.subChannelIndex)
        appendBlock(channel.offer.userDefined, to: &out)
        appendBlock(Array(channel.offer.name.utf8.prefix(ServerStateReader.maximumNameBytes)), to: &out)
        func request(_ tag: UInt8, _ request: OpenRequest) {
            out.append(tag)
            out.appendLittleEndian(request.openID)
            out.appendLittleEndian(request.ring.id)
            out.appendLittleEndian(UInt32(request.downstreamPageOffset))
            out.appendLittleEndian(request.targetVP)
            appendBlock(request.userData, to: &out)
        }
        switch channel.state {
        case .pending: out.append(0)
        case .offered: out.append(1)
        case .opening(let open): request(2, open)
        case .open(let open): request(3, open)
        case .rescinded: out.append(4)
        case .withdrawing(let open): request(5, open)
        case .released: return nil
        }
        return out
    }

    static func chunk(_ chunk: Int, of gpadl: GPADL, _ summary: GPADLSummary) -> [UInt8] {
        var out: [UInt8] = []
        out.appendLittleEndian(ServerState.version)
        if chunk == 0 {
            out.appendLittleEndian(summary.channel)
            out.appendLittleEndian(summary.byteOffset)
            out.appendLittleEndian(summary.byteCount)
            out.append(summary.created ? 1 : 0)
            out.appendLittleEndian(UInt32(summary.needed))
            out.appendLittleEndian(UInt32(summary.pageCount))
        }
        let start = chunk * ServerState.pagesPerChunk
        let end = min(start + ServerState.pagesPerChunk, gpadl.pageNumbers.count)
        if start < end {
            for page in gpadl.pageNumbers[start..<end] { out.appendLittleEndian(page) }
        }
        return out
    }

    static func appendBlock(_ bytes: [UInt8], to out: inout [UInt8]) {
        out.appendLittleEndian(UInt16(bytes.count))
        out += bytes
    }
}

// MARK: - Restoring

/// Reads one record, every read bounds-checked.
struct ServerStateReader {
    let key: UInt64
    let bytes: [UInt8]
    var offset = 0

    static let maximumNameBytes = 64

    init(key: UInt64, bytes: [UInt8]) throws(ServerStateError) {
        self.key = key
        self.bytes = bytes
        let version = try u16()
        guard version == ServerState.version else { throw .unsupportedVersion(version) }
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(ServerStateError) -> T {
        guard let value = bytes.littleEndian(T.self, at: offset) else { throw .malformed(key: key, "truncated") }
        offset += T.bitWidth / 8
        return value
    }

    mutating func u8() throws(ServerStateError) -> UInt8 { try integer(UInt8.self) }
    mutating func u16() throws(ServerStateError) -> UInt16 { try integer(UInt16.self) }
    mutating func u32() throws(ServerStateError) -> UInt32 { try integer(UInt32.self) }
    mutating func u64() throws(ServerStateError) -> UInt64 { try integer(UInt64.self) }

    mutating func block(limit: Int) throws(ServerStateError) -> [UInt8] {
        let count = Int(try u16())
        guard count <= limit, count <= bytes.count - offset else { throw .malformed(key: key, "a field of \(count) bytes") }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    mutating func guid() throws(ServerStateError) -> GUID {
        guard offset <= bytes.count - GUID.size,
              let guid = GUID(wireBytes: Array(bytes[offset..<(offset + GUID.size)])) else {
            throw .malformed(key: key, "truncated")
        }
        offset += GUID.size
        return guid
    }

    func end() throws(ServerStateError) {
        guard offset == bytes.count else { throw .malformed(key: key, "\(bytes.count - offset) trailing bytes") }
    }
}

extension VMBusServer {
    /// A server in the state `records` describe (the server's own records, by key; others are
    /// refused). Each is checked against `configuration`: pages inside guest RAM, processors that
    /// exist, the GPADL limits, open channels whose ring GPADL exists, is complete and is theirs.
    public init(configuration: Configuration, restoring records: [UInt64: [UInt8]]) throws(ServerStateError) {
        self.init(configuration: configuration)
        guard let headerBytes = records[ServerState.headerKey] else { throw .missingHeader }
        var header = try ServerStateReader(key: ServerState.headerKey, bytes: headerBytes)
        if try header.u8() != 0 {
            let version = VMBusVersion(rawValue: try header.u32())
            let targetVP = try header.u32()
            let sint = try header.u8()
            guard VMBusVersion.supported.contains(version), targetVP < configuration.processorCount,
                  Int(sint) < SynIC.sintCount else {
                throw .malformed(key: ServerState.headerKey, "connection \(version.rawValue) to processor \(targetVP) SINT \(sint)")
            }
            connection = Connection(version: version, targetVP: targetVP, sint: sint)
        }
        nextRelID = try header.u32()
        guard (1...(VMBusConstants.maximumChildRelID + 1)).contains(nextRelID) else {
            throw .malformed(key: ServerState.headerKey, "next relid \(nextRelID)")
        }
        offersDelivered = try header.u8() != 0
        try header.end()

        var openRequests: [UInt32: (tag: UInt8, openID: UInt32, gpadl: UInt32, offset: UInt32, targetVP: UInt32, userData: [UInt8])] = [:]
        var chunks: [UInt32: [UInt16: [UInt8]]] = [:]
        for key in records.keys.sorted() where key != ServerState.headerKey {
            guard ServerState.owns(key), let bytes = records[key] else { throw .malformed(key: key, "not a VMBus record") }
            let id = UInt32(truncatingIfNeeded: key)
            let chunk = UInt16(truncatingIfNeeded: key >> 32)
            switch ServerState.Kind(rawValue: (key >> 48) & 0xFF) {
            case .channel?:
                guard chunk == 0, id >= 1, id < nextRelID else { throw .malformed(key: key, "relid \(id)") }
                var reader = try ServerStateReader(key: key, bytes: bytes)
                let type = try reader.guid()
                let instance = try reader.guid()
                let subChannelIndex = try reader.u16()
                let userDefined = try reader.block(limit: OfferChannel.userDefinedSize)
                guard userDefined.count == OfferChannel.userDefinedSize else {
                    throw .malformed(key: key, "user-defined area of \(userDefined.count) bytes")
                }
                let name = String(decoding: try reader.block(limit: ServerStateReader.maximumNameBytes), as: UTF8.self)
                let offer = ChannelOffer(interfaceType: type, interfaceInstance: instance, name: name,
                                         subChannelIndex: subChannelIndex, userDefined: userDefined)
                let tag = try reader.u8()
                let state: ChannelState
                switch tag {
                case 0: state = .pending
                case 1: state = .offered
                case 2, 3, 5:
                    let openID = try reader.u32()
                    let gpadl = try reader.u32()
                    let offset = try reader.u32()
                    let targetVP = try reader.u32()
                    let userData = try reader.block(limit: OpenChannel.userDataSize)
                    openRequests[id] = (tag, openID, gpadl, offset, targetVP, userData)
                    state = .offered  // completed below, once the GPADLs are known
                case 4: state = .rescinded
                default: throw .malformed(key: key, "channel state \(tag)")
                }
                try reader.end()
                channels[id] = Channel(offer: offer, state: state)
            case .gpadlChunk?:
                guard chunks[id] != nil || chunks.count < configuration.maximumGPADLs else {
                    throw .inconsistent("more than \(configuration.maximumGPADLs) GPADLs")
                }
                chunks[id, default: [:]][chunk] = bytes
            default:
                throw .malformed(key: key, "unknown kind")
            }
        }

        let memoryPages = configuration.memorySize / UInt64(VMBusConstants.pageSize)
        var totalPages = 0
        for id in chunks.keys.sorted() {
            guard let parts = chunks[id], let first = parts[0] else { throw .inconsistent("GPADL \(id) has no first chunk") }
            let firstKey = ServerState.key(.gpadlChunk, id: id)
            var reader = try ServerStateReader(key: firstKey, bytes: first)
            let channel = try reader.u32()
            let byteOffset = try reader.u32()
            let byteCount = try reader.u32()
            let created = try reader.u8() != 0
            let needed = Int(try reader.u32())
            let pageCount = Int(try reader.u32())
            guard needed <= configuration.maximumGPADLPages, pageCount <= needed, !created || pageCount == needed,
                  byteOffset < UInt32(VMBusConstants.pageSize), byteCount > 0 else {
                throw .malformed(key: firstKey, "\(pageCount) of \(needed) pages")
            }
            guard let owner = channels[channel]?.state, owner != .pending else {
                throw .inconsistent("GPADL \(id) belongs to relid \(channel), which has no live channel")
            }
            totalPages += needed
            guard totalPages <= configuration.maximumTotalGPADLPages else {
                throw .inconsistent("the GPADLs describe more than \(configuration.maximumTotalGPADLPages) pages")
            }
            let chunkCount = max(1, (pageCount + ServerState.pagesPerChunk - 1) / ServerState.pagesPerChunk)
            guard parts.count == chunkCount else { throw .inconsistent("GPADL \(id) has \(parts.count) chunks, not \(chunkCount)") }
            var pages: [UInt64] = []
            pages.reserveCapacity(pageCount)
            for index in 0..<chunkCount {
                if index > 0 {
                    let key = ServerState.key(.gpadlChunk, id: id, chunk: UInt16(index))
                    guard let bytes = parts[UInt16(index)] else { throw .inconsistent("GPADL \(id) lacks chunk \(index)") }
                    reader = try ServerStateReader(key: key, bytes: bytes)
                }
                let count = min(ServerState.pagesPerChunk, pageCount - index * ServerState.pagesPerChunk)
                for _ in 0..<count {
                    let page = try reader.u64()
                    guard page < memoryPages else { throw .malformed(key: reader.key, "page 0x\(String(page, radix: 16)) is outside guest RAM") }
                    pages.append(page)
                }
                try reader.end()
            }
            let gpadl = GPADL(id: id, channel: channel, byteOffset: byteOffset, byteCount: byteCount, pageNumbers: pages)
            gpadls[id] = created ? .created(gpadl) : .assembling(gpadl, needed: needed)
        }

        for relID in openRequests.keys.sorted() {
            guard let saved = openRequests[relID] else { continue }
            guard case .created(let ring)? = gpadls[saved.gpadl], ring.channel == relID else {
                throw .inconsistent("relid \(relID) is open on GPADL \(saved.gpadl), which is not a complete GPADL of it")
            }
            let offset = Int(saved.offset)
            guard ring.byteOffset == 0, offset >= 2, ring.pageNumbers.count - offset >= 2,
                  Set(ring.pageNumbers).count == ring.pageNumbers.count,
                  saved.targetVP < configuration.processorCount else {
                throw .inconsistent("relid \(relID)'s rings or target processor")
            }
            let request = OpenRequest(channel: relID, openID: saved.openID, ring: ring, downstreamPageOffset: offset,
                                      targetVP: saved.targetVP, userData: saved.userData)
            switch saved.tag {
            case 3: channels[relID]?.state = .open(request)
            case 5: channels[relID]?.state = .withdrawing(request)
            default: channels[relID]?.state = .opening(request)
            }
        }
        guard connection != nil || (channels.values.allSatisfy { $0.state == .pending } && gpadls.isEmpty) else {
            throw .inconsistent("channels are offered but the guest is not connected")
        }
    }

    /// Every channel that is not released, by relid: its offer and its state.
    public var liveChannels: [(relID: UInt32, offer: ChannelOffer, state: ChannelState)] {
        channels.keys.sorted().compactMap { relID in
            guard let channel = channels[relID], channel.state != .released else { return nil }
            return (relID, channel.offer, channel.state)
        }
    }
}
