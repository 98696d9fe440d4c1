import HyperV
import StorageProtocol
import VMBusClient
import VMBusProtocol

/// The guest side of one channel of a synthetic SCSI controller, speaking storvsc's protocol
/// (drivers/scsi/storvsc_drv.c): the initialization handshake on the primary channel,
/// CREATE_SUB_CHANNELS, and EXECUTE_SRB requests — in-band without data, GPA-direct with one
/// range of guest pages — with as many in flight as the rings hold. Completions are polled.
///
/// Generic over the channel, so the guest runs it over its own rings and the host's tests run it
/// against the real VSP.
public struct StorageVSC<Channel: VMBusChannel> {
    public var channel: Channel
    /// The negotiated protocol version (a sub-channel's is its primary's).
    public private(set) var version: StorageProtocolVersion?
    /// What QUERY_PROPERTIES answered (primary channel only).
    public private(set) var properties: StorageChannelProperties?
    /// Unsolicited ENUMERATE_BUS and REMOVE_DEVICE packets seen (the host's bus changed).
    public private(set) var busChanges = 0
    /// Requests staged and not yet completed.
    public private(set) var inFlight = 0
    /// Requests staged on this channel since it was opened.
    public private(set) var staged = 0
    /// Completions that matched no request (a misbehaving host); they are dropped.
    public private(set) var strayCompletions = 0
    /// `run` calls so far: each request it runs gets a tag of its own.
    private var runs: UInt64 = 0
    var buffer = [UInt8](repeating: 0, count: 512)

    /// A primary channel (call `initialize` first), or a sub-channel at its primary's `version`.
    public init(channel: Channel, version: StorageProtocolVersion? = nil) {
        self.channel = channel
        self.version = version
    }

    // MARK: Initialization (primary channel)

    /// BEGIN_INITIALIZATION, QUERY_PROTOCOL_VERSION (each of `versions` in turn until one is
    /// accepted), QUERY_PROPERTIES and END_INITIALIZATION, each waiting up to `timeoutNanoseconds`
    /// for its answer, as `storvsc_channel_init` does.
    /// - Returns: the properties, or `nil` if a step failed.
    public mutating func initialize(versions: [StorageProtocolVersion] = StorageProtocolVersion.offeredByLinux,
                                    timeoutNanoseconds: UInt64 = 10_000_000_000) -> StorageChannelProperties? {
        guard let begin = control(VStorPacket(operation: .beginInitialization, flags: .requestCompletion), timeoutNanoseconds),
              begin.status == .success else { return nil }
        var accepted: StorageProtocolVersion?
        for candidate in versions {
            guard let answer = control(StorageVersionRequest(version: candidate).packet, timeoutNanoseconds) else { return nil }
            if answer.status == .success {
                accepted = candidate
                break
            }
        }
        guard let accepted else { return nil }
        guard let answer = control(VStorPacket(operation: .queryProperties, flags: .requestCompletion), timeoutNanoseconds),
              answer.status == .success, let properties = try? StorageChannelProperties(parsing: answer) else { return nil }
        guard let end = control(VStorPacket(operation: .endInitialization, flags: .requestCompletion), timeoutNanoseconds),
              end.status == .success else { return nil }
        version = accepted
        self.properties = properties
        return properties
    }

    /// CREATE_SUB_CHANNELS for `count` sub-channels; their offers follow on the VMBus control
    /// path once this returns true.
    public mutating func createSubChannels(_ count: UInt16, timeoutNanoseconds: UInt64 = 10_000_000_000) -> Bool {
        guard version != nil, count > 0 else { return false }
        return control(SubChannelRequest(count: count).packet, timeoutNanoseconds)?.status == .success
    }

    /// Sends an initialization-phase packet and waits for its answer (transaction ID
    /// `VMBUS_RQST_INIT`); unsolicited packets meanwhile are counted.
    mutating func control(_ packet: VStorPacket, _ timeoutNanoseconds: UInt64) -> VStorPacket? {
        let transaction = StorageChannelConstants.initializationTransactionID
        guard channel.send(.inband, flags: .completionRequested, transactionID: transaction, payload: packet.bytes,
                           timeoutNanoseconds: timeoutNanoseconds) else { return nil }
        let deadline = channel.timestamp() &+ channel.ticks(nanoseconds: timeoutNanoseconds)
        while channel.timestamp() < deadline {
            guard let descriptor = channel.receive(into: &buffer) else {
                channel.relax()
                continue
            }
            guard let answer = try? VStorPacket(parsing: buffer, from: descriptor.payloadOffset, to: descriptor.totalLength)
            else { continue }
            if descriptor.transactionID == transaction { return answer }
            noteUnsolicited(descriptor.transactionID, answer)
        }
        return nil
    }

    private mutating func noteUnsolicited(_ transactionID: UInt64, _ packet: VStorPacket) {
        if transactionID == StorageChannelConstants.unsolicitedTransactionID,
           packet.operation == .enumerateBus || packet.operation == .removeDevice {
            busChanges += 1
        } else {
            strayCompletions += 1
        }
    }

    // MARK: Requests

    /// Stages an EXECUTE_SRB for `request` (published with the next `publish`); the completion
    /// carries `tag`. Returns false when the ring has no room now (poll, publish, try again).
    public mutating func stage(_ request: StorageRequest, tag: UInt64) -> Bool {
        guard let version, tag < StorageChannelConstants.resetTransactionID - 1 else { return false }
        var block = SCSIRequestBlock(targetID: request.target, lun: request.lun, cdb: request.cdb,
                                     dataDirection: request.direction, dataTransferLength: request.buffer?.byteCount ?? 0,
                                     srbFlags: request.flags)
        block.pathID = 0
        let payload = block.packet(version: version).bytes
        let staged: Bool
        if let range = request.buffer {
            staged = channel.stage(.gpaDirect, flags: .completionRequested, transactionID: tag &+ 1,
                                   header: StorageGPADirectHeader(range: range).bytes, payload: payload)
        } else {
            staged = channel.stage(.inband, flags: .completionRequested, transactionID: tag &+ 1, header: [], payload: payload)
        }
        if staged {
            inFlight += 1
            self.staged += 1
        }
        return staged
    }

    /// Publishes what was staged (signalling the host if it needs it).
    public mutating func publish() {
        channel.publish()
    }

    /// Reads the completions waiting in the ring and hands each to `body`; returns how many.
    @discardableResult
    public mutating func poll(_ body: (StorageCompletion) -> Void) -> Int {
        var count = 0
        while let descriptor = channel.receive(into: &buffer) {
            guard let packet = try? VStorPacket(parsing: buffer, from: descriptor.payloadOffset, to: descriptor.totalLength)
            else {
                strayCompletions += 1
                continue
            }
            let transaction = descriptor.transactionID
            guard transaction != StorageChannelConstants.unsolicitedTransactionID,
                  transaction < StorageChannelConstants.resetTransactionID, packet.operation == .completeIO,
                  let version, let block = try? SCSIRequestBlock(parsing: packet, version: version), inFlight > 0
            else {
                noteUnsolicited(transaction, packet)
                continue
            }
            inFlight -= 1
            count += 1
            body(StorageCompletion(tag: transaction &- 1, status: packet.status, srbStatus: block.srbStatus,
                                   scsiStatus: block.scsiStatus, transferred: block.dataTransferLength,
                                   sense: block.scsiStatus == .checkCondition ? block.sense : []))
        }
        return count
    }

    /// Tags of `run`'s requests: above any slot number a workload uses as a tag.
    static var runTags: UInt64 { 0x5C5 << 32 }

    /// Runs one request to completion (discovery, flushes): stages, publishes and polls for up to
    /// `timeoutNanoseconds` (by default the request's own, `StorageRequest.timeoutNanoseconds`).
    /// Other completions arriving meanwhile are dropped, so call it only with nothing else in
    /// flight. A request an earlier call gave up on may still be: it is waited for first (within
    /// the same deadline), as it may still move data into a buffer this one reuses, and each
    /// call's request has a tag of its own, so a late completion is never taken for a later
    /// request's.
    public mutating func run(_ request: StorageRequest, timeoutNanoseconds: UInt64? = nil) -> StorageCompletion? {
        runs &+= 1
        let tag = Self.runTags | (runs & 0xFFFF_FFFF)
        let deadline = channel.timestamp() &+ channel.ticks(nanoseconds: timeoutNanoseconds ?? request.timeoutNanoseconds)
        while inFlight > 0 {
            guard channel.timestamp() < deadline else { return nil }
            if poll({ _ in }) == 0 { channel.relax() }
        }
        while !stage(request, tag: tag) {
            publish()
            guard channel.timestamp() < deadline else { return nil }
            channel.relax()
        }
        publish()
        var result: StorageCompletion?
        while result == nil, channel.timestamp() < deadline {
            if poll({ completion in if completion.tag == tag { result = completion } }) == 0 { channel.relax() }
        }
        return result
    }
}

/// One SCSI command as the VSC sends it.
public struct StorageRequest {
    public var target: UInt8
    public var lun: UInt8
    public var cdb: [UInt8]
    public var direction: SRBDataDirection
    /// The data buffer: its length is the transfer length.
    public var buffer: GPARange?
    public var flags: SRBFlags
    /// How long `StorageVSC.run` waits for it, as Linux's sd does: 30 s (SD_TIMEOUT), twice that
    /// for SYNCHRONIZE CACHE (SD_FLUSH_TIMEOUT_MULTIPLIER), which may write back a whole cache.
    public var timeoutNanoseconds: UInt64

    public init(target: UInt8 = 0, lun: UInt8, cdb: [UInt8], direction: SRBDataDirection, buffer: GPARange? = nil) {
        self.target = target
        self.lun = lun
        self.cdb = cdb
        self.direction = direction
        self.buffer = buffer
        let opcode = cdb.first.map(SCSIOperationCode.init(rawValue:))
        let flush = opcode == .synchronizeCache10 || opcode == .synchronizeCache16
        timeoutNanoseconds = flush ? 60_000_000_000 : 30_000_000_000
        switch direction {
        case .read: flags = [.disableSynchronousTransfer, .dataIn]
        case .write: flags = [.disableSynchronousTransfer, .dataOut]
        default: flags = [.disableSynchronousTransfer]
        }
    }

    /// READ or WRITE of `blocks` blocks at `lba` (the 10-byte CDB when it fits, as Linux's sd).
    public static func transfer(write: Bool, target: UInt8 = 0, lun: UInt8, lba: UInt64, blocks: UInt32, buffer: GPARange,
                                forceUnitAccess: Bool = false) -> StorageRequest {
        let cdb = ReadWriteCDB.smallest(direction: write ? .write : .read, logicalBlockAddress: lba, transferLength: blocks,
                                        forceUnitAccess: forceUnitAccess)
        return StorageRequest(target: target, lun: lun, cdb: cdb.bytes, direction: write ? .write : .read, buffer: buffer)
    }

    /// SYNCHRONIZE CACHE (10) of the whole disk, as Linux's sd sends it for a flush.
    public static func synchronizeCache(target: UInt8 = 0, lun: UInt8) -> StorageRequest {
        StorageRequest(target: target, lun: lun, cdb: SynchronizeCacheCDB().bytes, direction: .noData)
    }
}

/// A request's completion.
public struct StorageCompletion {
    public var tag: UInt64
    /// The NTSTATUS of the vstor_packet.
    public var status: StorageStatus
    public var srbStatus: SRBStatus
    public var scsiStatus: SCSIStatus
    /// Bytes the host moved.
    public var transferred: UInt32
    /// Fixed-format sense data, with CHECK CONDITION.
    public var sense: [UInt8]

    /// SRB_STATUS_SUCCESS with GOOD status.
    public var succeeded: Bool { srbStatus.code == .success && scsiStatus == .good }
}

extension GPARange {
    /// The range of `length` bytes at guest-physical `address` in memory that is contiguous in
    /// guest-physical space (the guest's own pages: it is identity-mapped).
    public init(address: UInt64, length: Int) {
        let offset = UInt32(truncatingIfNeeded: address % UInt64(VMBusConstants.pageSize))
        let count = VMBusConstants.pageCount(byteOffset: offset, byteCount: UInt32(truncatingIfNeeded: length))
        let first = address / UInt64(VMBusConstants.pageSize)
        var pfns: [UInt64] = []
        pfns.reserveCapacity(count)
        for index in 0..<count { pfns.append(first + UInt64(index)) }
        self.init(byteCount: UInt32(truncatingIfNeeded: length), byteOffset: offset, pfns: pfns)
    }
}
