import StorageProtocol
import VMBusProtocol

extension StorageServer {
    /// What a request handed to the driver is doing, for its completion.
    enum RequestKind: Hashable, Sendable {
        case dataIn
        case parameterList
        case read
        case write
        case flush
        case unmap
    }

    /// A request handed to the driver.
    struct InFlight: Sendable {
        var transactionID: UInt64
        var block: SCSIRequestBlock
        var version: StorageProtocolVersion
        var address: StorageController.Address
        var unit: StorageController.UnitID?
        var kind: RequestKind
        var buffer: GPARange?
        /// Bytes the operation moves when it succeeds.
        var expectedBytes: Int
    }

    /// A bounded table of requests in flight; tokens carry a generation so a stale or repeated
    /// completion is recognised.
    struct RequestTable: Sendable {
        private var slots: [InFlight?] = []
        private var generations: [UInt32] = []
        private var free: [UInt32] = []
        private(set) var count = 0

        mutating func insert(_ request: InFlight, limit: Int) -> StorageRequestToken? {
            guard count < limit else { return nil }
            let slot: UInt32
            if let reused = free.popLast() {
                slot = reused
            } else {
                slot = UInt32(slots.count)
                slots.append(nil)
                generations.append(0)
            }
            slots[Int(slot)] = request
            count += 1
            return StorageRequestToken(slot: slot, generation: generations[Int(slot)])
        }

        mutating func remove(_ token: StorageRequestToken) -> InFlight? {
            let slot = Int(token.slot)
            guard slot < slots.count, generations[slot] == token.generation, let request = slots[slot].take() else { return nil }
            generations[slot] &+= 1
            free.append(token.slot)
            count -= 1
            return request
        }

        mutating func replace(_ token: StorageRequestToken, with request: InFlight) -> StorageRequestToken {
            let slot = Int(token.slot)
            slots[slot] = request
            generations[slot] &+= 1
            return StorageRequestToken(slot: token.slot, generation: generations[slot])
        }
    }

    /// The answer a request block gets: its status, sense and byte count.
    struct SRBAnswer {
        var ntStatus: StorageStatus = .success
        var srbStatus: SRBStatus
        var scsiStatus: SCSIStatus = .good
        var sense: SenseData?
        var transferred: UInt32 = 0

        static func good(_ transferred: Int = 0) -> SRBAnswer {
            SRBAnswer(srbStatus: .success, transferred: UInt32(clamping: transferred))
        }

        static func check(_ sense: SenseData) -> SRBAnswer {
            SRBAnswer(srbStatus: .error, scsiStatus: .checkCondition, sense: sense)
        }

        static let invalidRequest = SRBAnswer(ntStatus: .invalidParameter, srbStatus: .invalidRequest)
        static let invalidLUN = SRBAnswer(srbStatus: .invalidLUN)
        static let busy = SRBAnswer(ntStatus: StorageServer.deviceBusy, srbStatus: .busy, scsiStatus: .busy)
    }

    /// The completion of `block` with `answer`, in the fields `storvsc_on_io_completion` reads:
    /// operation COMPLETE_IO, NTSTATUS @8, srb_status @14, scsi_status @15,
    /// sense_info_length @21, data_transfer_length @24 and the sense bytes @28. Sense is only
    /// sent with CHECK CONDITION, with AUTOSENSE_VALID, and no longer than the guest's buffer.
    func completion(of block: SCSIRequestBlock, version: StorageProtocolVersion, answer: SRBAnswer,
                    transactionID: UInt64) -> StorageAction {
        var reply = block
        reply.srbStatus = answer.srbStatus
        reply.scsiStatus = answer.scsiStatus
        reply.dataTransferLength = answer.transferred
        let room = min(Int(block.senseInfoLength), version.senseBufferSize)
        if let sense = answer.sense, answer.scsiStatus == .checkCondition, room > 0 {
            reply.setSense(sense.bytes.truncated(to: room))
            reply.srbStatus = reply.srbStatus.withValidSense
        } else {
            reply.setSense([])
        }
        var packet = VStorPacket(operation: .completeIO, status: answer.ntStatus)
        reply.store(into: &packet, version: version)
        return .send(.completion(packet, transactionID: transactionID))
    }

    /// EXECUTE_SRB: validates the request block and its buffer, runs the CDB on the addressed
    /// unit, and either answers at once or hands the driver a request.
    mutating func executeSRB(_ request: VStorPacket, _ packet: StorageIncomingPacket, into actions: inout [StorageAction]) {
        switch validateSRB(request, packet) {
        case .refused(let answer):
            actions += answer
        case .valid(let block, let version, let buffer):
            let address = StorageController.Address(path: block.pathID, target: block.targetID, lun: block.lun)
            // The CDB goes through an array the server keeps, so a request allocates none.
            block.copyCDB(into: &cdbBytes)
            let result = controller.execute(cdbBytes, at: address)
            dispatch(result.outcome, unit: result.unit, block: block, version: version, address: address,
                     buffer: buffer, transactionID: packet.transactionID, into: &actions)
        }
    }

    /// What checking an EXECUTE_SRB found.
    private enum SRBValidation {
        /// Answered at once (negatively).
        case refused([StorageAction])
        /// The CDB is 1...16 bytes, at least as long as its opcode's group needs.
        case valid(SCSIRequestBlock, StorageProtocolVersion, buffer: GPARange?)
    }

    /// Checks the request block and its buffer before the CDB runs.
    private func validateSRB(_ request: VStorPacket, _ packet: StorageIncomingPacket) -> SRBValidation {
        guard case .ready(let version) = phase else {
            return .refused([.protocolViolation("EXECUTE_SRB before END_INITIALIZATION")]
                + invalid(request, packet, status: .invalidDeviceState))
        }
        let block: SCSIRequestBlock
        do {
            block = try SCSIRequestBlock(parsing: request, version: version)
        } catch {
            return .refused([.protocolViolation("EXECUTE_SRB with a \(request.bodyLength)-byte request block")]
                + invalid(request, packet, status: .invalidParameter))
        }
        let transactionID = packet.transactionID
        func refuse(_ reason: String) -> SRBValidation {
            .refused([.protocolViolation("SRB \(transactionID): \(reason)"),
                      completion(of: block, version: version, answer: .invalidRequest, transactionID: transactionID)])
        }

        // The request block and its buffer.
        guard let opcode = block.cdbOpcode else { return refuse("cdb_length \(block.cdbLength)") }
        if let needed = SCSIOperationCode(rawValue: opcode).groupLength, Int(block.cdbLength) < needed {
            return refuse("a \(block.cdbLength)-byte CDB for opcode \(opcode) of \(needed) bytes")
        }
        let transferLength = Int(block.dataTransferLength)
        guard block.dataTransferLength <= controller.maximumTransferBytes else {
            return refuse("transfer of \(transferLength) bytes above \(controller.maximumTransferBytes)")
        }
        var buffer: GPARange?
        switch packet.buffer {
        case .none:
            guard packet.type == .inband else { return refuse("GPA-direct packet without a buffer") }
            guard transferLength == 0 else { return refuse("in-band SRB with a \(transferLength)-byte transfer") }
        case .malformed(let error):
            return refuse("GPA-direct header: \(error)")
        case .range(let range):
            guard packet.type == .gpaDirect else { return refuse("a buffer on an in-band packet") }
            guard range.byteOffset < UInt32(VMBusConstants.pageSize),
                  range.pfns.count == VMBusConstants.pageCount(byteOffset: range.byteOffset, byteCount: range.byteCount)
            else { return refuse("range of \(range.byteCount) bytes at \(range.byteOffset) with \(range.pfns.count) pages") }
            guard range.byteCount <= controller.maximumTransferBytes else {
                return refuse("buffer of \(range.byteCount) bytes above \(controller.maximumTransferBytes)")
            }
            guard Int(range.byteCount) >= transferLength else {
                return refuse("buffer of \(range.byteCount) bytes for a \(transferLength)-byte transfer")
            }
            buffer = range
        }
        if transferLength > 0, block.dataDirection != .read, block.dataDirection != .write {
            return refuse("\(transferLength)-byte transfer with direction \(block.dataDirection.rawValue)")
        }

        return .valid(block, version, buffer: buffer)
    }

    /// Turns a unit's outcome into an answer or a request for the driver.
    mutating func dispatch(_ outcome: SCSIOutcome, unit: StorageController.UnitID?, block: SCSIRequestBlock,
                           version: StorageProtocolVersion, address: StorageController.Address, buffer: GPARange?,
                           transactionID: UInt64, into actions: inout [StorageAction]) {
        let transferLength = Int(block.dataTransferLength)
        func answer(_ answer: SRBAnswer) {
            actions.append(completion(of: block, version: version, answer: answer, transactionID: transactionID))
        }
        func refuse(_ reason: String) {
            actions.append(.protocolViolation("SRB \(transactionID): \(reason)"))
            answer(.invalidRequest)
        }
        func hand(_ kind: RequestKind, _ operation: StorageIORequest.Operation, bytes: Int) {
            // Only data-in copies may come from an absent unit (INQUIRY 0x7F, REPORT LUNS).
            guard unit != nil || kind == .dataIn else {
                return answer(.check(SenseData(key: .hardwareError, additional: .internalTargetFailure)))
            }
            let record = InFlight(transactionID: transactionID, block: block, version: version, address: address,
                                  unit: unit, kind: kind, buffer: buffer, expectedBytes: bytes)
            guard let token = requests.insert(record, limit: configuration.maximumOutstandingRequests) else {
                return answer(.busy)
            }
            actions.append(.execute(StorageIORequest(token: token, transactionID: transactionID, address: address, unit: unit,
                                                     operation: operation, buffer: buffer)))
        }

        switch outcome {
        case .good:
            return answer(.good())
        case .checkCondition(let sense):
            return answer(.check(sense))
        case .invalidLUN:
            return answer(.invalidLUN)
        case .dataIn(let bytes):
            let count = min(bytes.count, transferLength)
            guard count > 0 else { return answer(.good()) }
            guard block.dataDirection == .read else { return refuse("data-in command with direction \(block.dataDirection.rawValue)") }
            return hand(.dataIn, .copyToGuest(Array(bytes[0..<count])), bytes: count)
        case .read(let offset, let length, let fua):
            guard block.dataDirection == .read else { return refuse("READ with direction \(block.dataDirection.rawValue)") }
            guard transferLength >= length else { return refuse("READ of \(length) bytes into \(transferLength)") }
            return hand(.read, .read(offset: offset, length: length, forceUnitAccess: fua), bytes: length)
        case .write(let offset, let length, let fua):
            guard block.dataDirection == .write else { return refuse("WRITE with direction \(block.dataDirection.rawValue)") }
            guard transferLength >= length else { return refuse("WRITE of \(length) bytes from \(transferLength)") }
            return hand(.write, .write(offset: offset, length: length, forceUnitAccess: fua), bytes: length)
        case .flush:
            return hand(.flush, .flush, bytes: 0)
        case .needsParameterList(let length):
            let count = min(length, transferLength)
            guard count > 0 else { return refuse("UNMAP parameter list of \(length) bytes without a buffer") }
            guard block.dataDirection == .write else { return refuse("UNMAP with direction \(block.dataDirection.rawValue)") }
            return hand(.parameterList, .readParameterList(length: count), bytes: count)
        case .unmap(let ranges):
            return hand(.unmap, .unmap(ranges), bytes: 0)
        }
    }

    /// Answers an SRB that cannot be run (wrong phase, short request block).
    private func invalid(_ request: VStorPacket, _ packet: StorageIncomingPacket, status: StorageStatus) -> [StorageAction] {
        var answer = VStorPacket(operation: .completeIO, status: status)
        let version = version ?? .win8
        // Echo what the guest sent of its request block; a short one is answered with zeros.
        var block: SCSIRequestBlock
        do {
            block = try SCSIRequestBlock(parsing: request, version: version)
        } catch {
            block = SCSIRequestBlock(cdb: [], dataDirection: .noData, dataTransferLength: 0)
        }
        block.srbStatus = .invalidRequest
        block.scsiStatus = .good
        block.dataTransferLength = 0
        block.setSense([])
        block.store(into: &answer, version: version)
        return [.send(.completion(answer, transactionID: packet.transactionID))]
    }

    /// The driver finished a request: the completion to send (or, for a stale token, nothing).
    public mutating func complete(_ token: StorageRequestToken, result: StorageIOResult) -> [StorageAction] {
        var actions: [StorageAction] = []
        complete(token, result: result, into: &actions)
        return actions
    }

    /// The same, appending to `actions`.
    public mutating func complete(_ token: StorageRequestToken, result: StorageIOResult, into actions: inout [StorageAction]) {
        guard let request = requests.remove(token) else {
            actions.append(.protocolViolation("\(token) completed twice or never handed out"))
            return
        }
        let answer: SRBAnswer
        switch result {
        case .completed(let bytes):
            switch request.kind {
            case .dataIn:
                answer = .good(min(bytes, request.expectedBytes))
            case .read, .write:
                answer = bytes == request.expectedBytes ? .good(bytes) : .check(Self.sense(for: .mediumError, request.kind))
            case .flush, .unmap:
                answer = .good()
            case .parameterList:
                // The driver was to call `parameterListArrived`; a bare completion ends it.
                answer = .invalidRequest
            }
        case .failed(.guestMemory):
            answer = .invalidRequest
        case .failed(let failure):
            answer = .check(Self.sense(for: failure, request.kind))
        }
        actions.append(completion(of: request.block, version: request.version, answer: answer, transactionID: request.transactionID))
    }

    /// The UNMAP parameter list the driver read from the guest buffer (`readParameterList`):
    /// the unit validates it and the request goes on as a hole punch or completes.
    public mutating func parameterListArrived(_ token: StorageRequestToken, _ bytes: [UInt8]) -> [StorageAction] {
        guard let request = requests.remove(token), request.kind == .parameterList else {
            return [.protocolViolation("\(token) is not waiting for a parameter list")]
        }
        guard let unit = request.unit else {
            return [completion(of: request.block, version: request.version, answer: .invalidRequest,
                               transactionID: request.transactionID)]
        }
        let outcome = controller.unmap(parameterList: bytes.truncated(to: request.expectedBytes), at: request.address, unit: unit)
        var actions: [StorageAction] = []
        dispatch(outcome, unit: request.unit, block: request.block, version: request.version,
                 address: request.address, buffer: request.buffer, transactionID: request.transactionID, into: &actions)
        return actions
    }

    /// The sense a disk reports when its medium fails.
    static func sense(for failure: StorageIOFailure, _ kind: RequestKind) -> SenseData {
        switch failure {
        case .mediumError:
            SenseData(key: .mediumError, additional: kind == .read ? .unrecoveredReadError : .writeError)
        case .outOfSpace:
            SenseData(key: .dataProtect, additional: .spaceAllocationFailedWriteProtect)
        case .guestMemory, .deviceFailure:
            SenseData(key: .hardwareError, additional: .internalTargetFailure)
        }
    }
}
