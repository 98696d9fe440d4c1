import HyperV
import LinuxSupport

// The records that let a parent partition restart without the children noticing
// (Docs/architecture.md, "A parent that restarts"): the parent's opaque saved state, which the
// root keeps per partition; guest messages numbered so the parent can acknowledge them; and the
// commit that makes a state change, the SynIC messages it answers with and its acknowledgement
// one atomic step.

/// One record of a partition's saved state: the root stores it by key and never looks inside.
public struct StateRecord: Hashable, Sendable {
    public var key: UInt64
    /// The record's bytes; `nil` in a commit deletes the record.
    public var bytes: [UInt8]?

    public init(key: UInt64, bytes: [UInt8]?) {
        self.key = key
        self.bytes = bytes
    }

    /// The most bytes one record holds (it must fit in one datagram with its envelope).
    public static let maximumBytes = 48 << 10

    /// Bytes the record takes on the wire.
    var wireSize: Int { 8 + 1 + 4 + (bytes?.count ?? 0) }
}

/// Bounds on what the root keeps for one partition; a commit that would pass them is refused.
public enum SavedStateLimits {
    /// The most records.
    public static let maximumRecords = 8192
    /// The most bytes, all records together.
    public static let maximumBytes = 4 << 20
    /// The most records in one control message.
    public static let recordsPerMessage = 1024
    /// The most SynIC messages in one control message.
    public static let postsPerMessage = 256
}

/// A SynIC message the parent posts to a guest processor.
public struct SynICPost: Hashable, Sendable {
    public var vp: UInt32
    public var sint: UInt8
    public var messageType: UInt32
    public var payload: [UInt8]

    public init(vp: UInt32, sint: UInt8, messageType: UInt32, payload: [UInt8]) {
        self.vp = vp
        self.sint = sint
        self.messageType = messageType
        self.payload = payload
    }

    var wireSize: Int { 4 + 1 + 4 + 4 + payload.count }
}

/// A guest message (HvPostMessage on a connection the parent registered), numbered per
/// partition. The parent acknowledges the numbers it has handled; the root keeps what is not yet
/// acknowledged and hands it to the next parent if this one dies first.
public struct SequencedGuestMessage: Hashable, Sendable {
    public var partitionID: UInt32
    /// 1, 2, 3 … per partition, for the partition's lifetime (not the connection's).
    public var sequence: UInt64
    public var vp: UInt32
    public var connectionID: UInt32
    public var messageType: UInt32
    public var payload: [UInt8]

    public init(partitionID: UInt32, sequence: UInt64, vp: UInt32, connectionID: UInt32, messageType: UInt32,
                payload: [UInt8]) {
        self.partitionID = partitionID
        self.sequence = sequence
        self.vp = vp
        self.connectionID = connectionID
        self.messageType = messageType
        self.payload = payload
    }
}

/// A state change of a partition's parent-side services, the SynIC messages it answers with, and
/// the guest message it handled, as one step: the root applies all of it when the last part
/// arrives, or none of it if the parent dies before.
public struct StateCommit: Hashable, Sendable {
    public var partitionID: UInt32
    /// The guest message whose handling this commits (0: none); the root forgets it and every
    /// earlier one.
    public var sequence: UInt64
    /// Whether this is the commit's last part.
    public var isFinal: Bool
    public var records: [StateRecord]
    public var posts: [SynICPost]

    public init(partitionID: UInt32, sequence: UInt64, isFinal: Bool, records: [StateRecord], posts: [SynICPost]) {
        self.partitionID = partitionID
        self.sequence = sequence
        self.isFinal = isFinal
        self.records = records
        self.posts = posts
    }

    /// The envelope of a part: version, kind, partition, sequence, final flag, two counts.
    static let envelopeBytes = 2 + 2 + 4 + 8 + 1 + 4 + 4
    /// What a part may carry, so it fits one datagram.
    static let partBudget = SequencedPacketSocket.maximumMessageSize - 1024

    /// `records` and `posts` cut into parts that each fit a datagram, in order: the records
    /// first, then the posts; only the last part is final. An empty change is one empty part.
    public static func parts(partitionID: UInt32, sequence: UInt64, records: [StateRecord], posts: [SynICPost])
        -> [StateCommit]
    {
        var parts: [StateCommit] = []
        var current = StateCommit(partitionID: partitionID, sequence: sequence, isFinal: false, records: [], posts: [])
        var size = envelopeBytes
        func flush() {
            parts.append(current)
            current.records = []
            current.posts = []
            size = envelopeBytes
        }
        for record in records {
            if size + record.wireSize > partBudget || current.records.count == SavedStateLimits.recordsPerMessage { flush() }
            current.records.append(record)
            size += record.wireSize
        }
        for post in posts {
            if size + post.wireSize > partBudget || current.posts.count == SavedStateLimits.postsPerMessage { flush() }
            current.posts.append(post)
            size += post.wireSize
        }
        current.isFinal = true
        parts.append(current)
        return parts
    }
}

// MARK: Wire forms

extension WireEncoder {
    mutating func records(_ records: [StateRecord]) {
        u32(UInt32(records.count))
        for record in records {
            u64(record.key)
            bool(record.bytes != nil)
            if let bytes = record.bytes { data(bytes) }
        }
    }

    mutating func posts(_ posts: [SynICPost]) {
        u32(UInt32(posts.count))
        for post in posts {
            u32(post.vp)
            u8(post.sint)
            u32(post.messageType)
            data(post.payload)
        }
    }
}

extension WireDecoder {
    /// Records; `present` requires every one to carry bytes (saved state has no deletions).
    mutating func records(requiringBytes: Bool) throws(ControlProtocolError) -> [StateRecord] {
        let count = try u32()
        guard count <= UInt32(SavedStateLimits.recordsPerMessage) else { throw .truncated }
        var records: [StateRecord] = []
        for _ in 0..<count {
            let key = try u64()
            let present = try bool()
            guard present || !requiringBytes else { throw .truncated }
            records.append(StateRecord(key: key, bytes: present ? try data(limit: StateRecord.maximumBytes) : nil))
        }
        return records
    }

    mutating func posts() throws(ControlProtocolError) -> [SynICPost] {
        let count = try u32()
        guard count <= UInt32(SavedStateLimits.postsPerMessage) else { throw .truncated }
        var posts: [SynICPost] = []
        for _ in 0..<count {
            posts.append(SynICPost(vp: try u32(), sint: try u8(), messageType: try u32(),
                                   payload: try data(limit: SynIC.maximumMessagePayload)))
        }
        return posts
    }
}
