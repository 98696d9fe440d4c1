import HyperV

/// The `vmscsi_request` in the union of an EXECUTE_SRB packet and its completion
/// (drivers/scsi/storvsc_drv.c), at packet offset 12:
///
/// | vstor@ | field |
/// |---|---|
/// | 12 | u16 length (52) |
/// | 14 | u8 srb_status |
/// | 15 | u8 scsi_status |
/// | 16 | u8 port_number |
/// | 17 | u8 path_id |
/// | 18 | u8 target_id |
/// | 19 | u8 lun |
/// | 20 | u8 cdb_length |
/// | 21 | u8 sense_info_length |
/// | 22 | u8 data_in |
/// | 23 | u8 reserved |
/// | 24 | u32 data_transfer_length |
/// | 28 | u8 cdb[16] / sense_data[20] |
/// | 48 | u16 reserve (Win8 extension from here) |
/// | 50 | u8 queue_tag |
/// | 51 | u8 queue_action |
/// | 52 | u32 srb_flags |
/// | 56 | u32 time_out_value |
/// | 60 | u32 queue_sort_key |
public struct SCSIRequestBlock: Hashable, Sendable {
    /// Size from Windows 8 on.
    public static let size = 52
    /// Size of the Windows 8 extension (reserve through queue_sort_key).
    public static let win8ExtensionSize = 16
    /// The largest CDB (`STORVSC_MAX_CMD_LEN`).
    public static let maximumCDBLength = 16
    /// Size of the cdb/sense union (`STORVSC_SENSE_BUFFER_SIZE`).
    public static let senseCapacity = 20

    static let lengthOffset = 12
    static let srbStatusOffset = 14
    static let scsiStatusOffset = 15
    static let portOffset = 16
    static let pathOffset = 17
    static let targetOffset = 18
    static let lunOffset = 19
    static let cdbLengthOffset = 20
    static let senseLengthOffset = 21
    static let dataInOffset = 22
    static let reservedOffset = 23
    static let transferLengthOffset = 24
    static let cdbOffset = 28
    static let reserveOffset = 48
    static let queueTagOffset = 50
    static let queueActionOffset = 51
    static let srbFlagsOffset = 52
    static let timeOutOffset = 56
    static let queueSortKeyOffset = 60

    public var length: UInt16
    public var srbStatus: SRBStatus
    public var scsiStatus: SCSIStatus
    /// The guest's SCSI host number; meaningless to the host.
    public var portNumber: UInt8
    /// The SCSI channel ("path").
    public var pathID: UInt8
    public var targetID: UInt8
    public var lun: UInt8
    public var cdbLength: UInt8
    /// In requests: the sense buffer the guest has (20); in completions: the sense bytes valid.
    public var senseInfoLength: UInt8
    public var dataDirection: SRBDataDirection
    public var reserved: UInt8
    /// In requests: the buffer length; in completions: the bytes moved.
    public var dataTransferLength: UInt32
    /// The 20-byte cdb/sense union.
    public private(set) var cdbOrSense: FixedBytes<20>
    public var reserve: UInt16
    public var queueTag: UInt8
    public var queueAction: UInt8
    public var srbFlags: SRBFlags
    public var timeOutValue: UInt32
    public var queueSortKey: UInt32

    /// A request block with the given addressing and CDB (at most 16 bytes; `cdbLength` is its
    /// count), the rest as Linux fills it for a request (`storvsc_queuecommand`).
    public init(
        pathID: UInt8 = 0, targetID: UInt8 = 0, lun: UInt8 = 0, cdb: [UInt8], dataDirection: SRBDataDirection,
        dataTransferLength: UInt32, srbFlags: SRBFlags = .disableSynchronousTransfer, timeOutValue: UInt32 = 60
    ) {
        precondition(cdb.count <= Self.maximumCDBLength, "a CDB is at most 16 bytes")
        length = UInt16(Self.size)
        srbStatus = .pending
        scsiStatus = .good
        portNumber = 0
        self.pathID = pathID
        self.targetID = targetID
        self.lun = lun
        cdbLength = UInt8(cdb.count)
        senseInfoLength = UInt8(Self.senseCapacity)
        self.dataDirection = dataDirection
        reserved = 0
        self.dataTransferLength = dataTransferLength
        cdbOrSense = FixedBytes(copying: cdb)
        reserve = 0
        queueTag = 0
        queueAction = 0
        self.srbFlags = srbFlags
        self.timeOutValue = timeOutValue
        queueSortKey = 0
    }

    /// Reads the request block from a packet's union. At `version` ≥ Windows 8 all 52 bytes
    /// must be present; before, 36, and the extension reads as zero.
    /// - Throws: `.truncated` if the sender sent fewer bytes.
    public init(parsing packet: VStorPacket, version: StorageProtocolVersion) throws(StorageProtocolError) {
        let needed = version.srbSize
        guard packet.bodyLength >= needed else {
            throw .truncated(needed: VStorPacket.bodyOffset + needed, available: VStorPacket.bodyOffset + packet.bodyLength)
        }
        let body = packet.body
        func u8(_ offset: Int) -> UInt8 { body[offset - VStorPacket.bodyOffset] }
        func u16(_ offset: Int) -> UInt16 { body.littleEndian(UInt16.self, at: offset - VStorPacket.bodyOffset) ?? 0 }
        func u32(_ offset: Int) -> UInt32 { body.littleEndian(UInt32.self, at: offset - VStorPacket.bodyOffset) ?? 0 }
        length = u16(Self.lengthOffset)
        srbStatus = SRBStatus(rawValue: u8(Self.srbStatusOffset))
        scsiStatus = SCSIStatus(rawValue: u8(Self.scsiStatusOffset))
        portNumber = u8(Self.portOffset)
        pathID = u8(Self.pathOffset)
        targetID = u8(Self.targetOffset)
        lun = u8(Self.lunOffset)
        cdbLength = u8(Self.cdbLengthOffset)
        senseInfoLength = u8(Self.senseLengthOffset)
        dataDirection = SRBDataDirection(rawValue: u8(Self.dataInOffset))
        reserved = u8(Self.reservedOffset)
        dataTransferLength = u32(Self.transferLengthOffset)
        cdbOrSense = FixedBytes(copying: body, from: Self.cdbOffset - VStorPacket.bodyOffset)
        let extended = version >= .win8
        reserve = extended ? u16(Self.reserveOffset) : 0
        queueTag = extended ? u8(Self.queueTagOffset) : 0
        queueAction = extended ? u8(Self.queueActionOffset) : 0
        srbFlags = SRBFlags(rawValue: extended ? u32(Self.srbFlagsOffset) : 0)
        timeOutValue = extended ? u32(Self.timeOutOffset) : 0
        queueSortKey = extended ? u32(Self.queueSortKeyOffset) : 0
    }

    /// The CDB: the first `cdbLength` bytes of the union, or `nil` if cdb_length is 0 or
    /// larger than 16.
    public var cdb: [UInt8]? {
        guard cdbOpcode != nil else { return nil }
        return cdbOrSense.prefix(Int(cdbLength))
    }

    /// The CDB's first byte (its operation code), or `nil` when `cdb` is.
    public var cdbOpcode: UInt8? {
        guard cdbLength >= 1, Int(cdbLength) <= Self.maximumCDBLength else { return nil }
        return cdbOrSense[0]
    }

    /// Replaces `bytes` with the CDB (empty when `cdb` is `nil`), reusing its storage.
    public func copyCDB(into bytes: inout [UInt8]) {
        bytes.removeAll(keepingCapacity: true)
        guard cdbOpcode != nil else { return }
        for index in 0..<Int(cdbLength) { bytes.append(cdbOrSense[index]) }
    }

    /// The sense bytes of a completion: the first `senseInfoLength` bytes of the union (at
    /// most 20).
    public var sense: [UInt8] { cdbOrSense.prefix(Int(senseInfoLength)) }

    /// Replaces the union with `sense` (truncated to 20 bytes, zero-filled after it) and sets
    /// sense_info_length to its length.
    public mutating func setSense(_ sense: [UInt8]) {
        cdbOrSense = FixedBytes(copying: sense)
        senseInfoLength = UInt8(min(sense.count, Self.senseCapacity))
    }

    /// Writes the request block into a packet's union; at versions before Windows 8 the
    /// extension is left untouched.
    public func store(into packet: inout VStorPacket, version: StorageProtocolVersion) {
        packet.setField(length, at: Self.lengthOffset)
        packet.setField(srbStatus.rawValue, at: Self.srbStatusOffset)
        packet.setField(scsiStatus.rawValue, at: Self.scsiStatusOffset)
        packet.setField(portNumber, at: Self.portOffset)
        packet.setField(pathID, at: Self.pathOffset)
        packet.setField(targetID, at: Self.targetOffset)
        packet.setField(lun, at: Self.lunOffset)
        packet.setField(cdbLength, at: Self.cdbLengthOffset)
        packet.setField(senseInfoLength, at: Self.senseLengthOffset)
        packet.setField(dataDirection.rawValue, at: Self.dataInOffset)
        packet.setField(reserved, at: Self.reservedOffset)
        packet.setField(dataTransferLength, at: Self.transferLengthOffset)
        packet.setBytes(cdbOrSense, at: Self.cdbOffset)
        guard version >= .win8 else { return }
        packet.setField(reserve, at: Self.reserveOffset)
        packet.setField(queueTag, at: Self.queueTagOffset)
        packet.setField(queueAction, at: Self.queueActionOffset)
        packet.setField(srbFlags.rawValue, at: Self.srbFlagsOffset)
        packet.setField(timeOutValue, at: Self.timeOutOffset)
        packet.setField(queueSortKey, at: Self.queueSortKeyOffset)
    }

    /// A complete EXECUTE_SRB packet carrying this request block.
    public func packet(version: StorageProtocolVersion = .win10) -> VStorPacket {
        var packet = VStorPacket(operation: .executeSRB, flags: .requestCompletion)
        store(into: &packet, version: version)
        return packet
    }
}
