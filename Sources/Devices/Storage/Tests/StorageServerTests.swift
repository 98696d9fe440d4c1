import StorageProtocol
import StorageVSP
import Testing
import TestSupport
import VMBusProtocol

@Suite("Storage channel protocol state machine (storvsc_channel_init, storvsc_on_io_completion)")
struct StorageServerTests {
    func controller(discard: Bool = true, writeCache: Bool = true) throws -> StorageController {
        let controller = StorageController()
        try controller.attach(testDisk(writeCache: writeCache, discard: discard), target: 0, lun: 0)
        return controller
    }

    /// The single answer among `actions`, parsed.
    func answer(_ actions: [StorageAction]) throws -> (packet: StorageOutgoingPacket, vstor: VStorPacket) {
        let packets = sent(actions)
        try #require(packets.count == 1)
        let packet = packets[0]
        #expect(packet.type == .completion && packet.flags == [] && packet.payload.count == 64)
        return (packet, try VStorPacket(parsing: packet.payload))
    }

    @Test("Linux's initialization: BEGIN, QUERY_VERSION 6.2 accepted, QUERY_PROPERTIES, END; answers echo the transaction ID")
    func linuxInitialization() throws {
        var server = StorageServer(controller: try controller(), configuration: .init(maximumSubChannels: 3))
        let initID = StorageChannelConstants.initializationTransactionID
        for (request, phase) in [
            (VStorPacket(operation: .beginInitialization, flags: .requestCompletion), StorageServer.Phase.awaitingProtocolVersion),
            (StorageVersionRequest(version: .win10).packet, .initializing(.win10)),
            (VStorPacket(operation: .queryProperties, flags: .requestCompletion), .initializing(.win10)),
            (VStorPacket(operation: .endInitialization, flags: .requestCompletion), .ready(.win10)),
        ] {
            let (packet, vstor) = try answer(server.handle(inband(request)))
            #expect(packet.transactionID == initID)
            #expect(vstor.operation == .completeIO && vstor.status == .success)
            #expect(server.phase == phase)
            if request.operation == .queryProperties {
                let properties = try StorageChannelProperties(parsing: vstor)
                #expect(properties == StorageChannelProperties(maximumSubChannels: 3, flags: .supportsMultiChannel,
                                                               maximumTransferBytes: 0x40000))
                #expect(le(packet.payload, 16, as: UInt16.self) == 3)
                #expect(le(packet.payload, 20, as: UInt32.self) == 1)
                #expect(le(packet.payload, 24, as: UInt32.self) == 0x40000)
            }
        }
        #expect(server.version == .win10)
    }

    @Test("Handling into a kept list appends what handling alone returns, after what the list holds")
    func handlingIntoAListAppends() throws {
        let controller = try controller()
        var alone = readyServer(controller)
        var into = readyServer(controller)
        let read = srb(ReadWriteCDB(direction: .read, logicalBlockAddress: 8, transferLength: 8).bytes, length: 4096)
        let expected = alone.handle(read)
        var actions: [StorageAction] = [.protocolViolation("kept")]
        into.handle(read, into: &actions)
        #expect(actions == [.protocolViolation("kept")] + expected)
        let request = try #require(requests(expected).first)
        #expect(request.operation == .read(offset: 8 * 512, length: 4096, forceUnitAccess: false))
        // Completing into the list appends the completion the array form returns.
        let completion = alone.complete(request.token, result: .completed(byteCount: 4096))
        into.complete(request.token, result: .completed(byteCount: 4096), into: &actions)
        #expect(Array(actions.suffix(completion.count)) == completion && sent(completion).count == 1)
        #expect(alone.outstandingCount == 0 && into.outstandingCount == 0)
    }

    @Test("Negotiation accepts each version Linux offers", arguments: StorageProtocolVersion.offeredByLinux)
    func negotiationAtEachVersion(version: StorageProtocolVersion) throws {
        let controller = try controller()
        var server = readyServer(controller, version: version)
        #expect(server.phase == .ready(version))
        // SRBs parse at that version and complete.
        let completion = try #require(execute(&server, srb(TestUnitReadyCDB().bytes)))
        #expect(completion.block.srbStatus == .success)
    }

    @Test("A primary taken over after a parent restart serves requests at once, at the newest version, and creates no more sub-channels")
    func aResumedPrimaryServesWithoutInitialization() throws {
        let configuration = StorageServer.Configuration(maximumSubChannels: 3)
        var server = try #require(StorageServer(resuming: try controller(), configuration: configuration))
        #expect(server.phase == .ready(.win10))
        let completion = try #require(execute(&server, srb(TestUnitReadyCDB().bytes)))
        #expect(completion.block.srbStatus == .success)
        #expect(server.subChannelsCreated == 3, "the guest asked for its sub-channels before the restart")
    }

    @Test("A server whose accepted versions lay out requests differently cannot be resumed")
    func resumingNeedsOneLayout() throws {
        let mixed = StorageServer.Configuration(supportedVersions: [.win10, .win7])
        #expect(StorageServer.resumableVersion(of: mixed) == nil)
        #expect(StorageServer(resuming: try controller(), configuration: mixed) == nil)
        #expect(StorageServer.resumableVersion(of: .init()) == .win10)
    }

    @Test("Unsupported versions get REVISION_MISMATCH (0xC0000059) and Linux's next proposal is accepted")
    func versionFallback() throws {
        var server = StorageServer(controller: try controller(), configuration: .init(supportedVersions: [.win8]))
        _ = server.handle(inband(VStorPacket(operation: .beginInitialization, flags: .requestCompletion)))
        for version in [StorageProtocolVersion.win10, .win8_1] {
            let (packet, vstor) = try answer(server.handle(inband(StorageVersionRequest(version: version).packet)))
            #expect(vstor.status == .revisionMismatch)
            #expect(le(packet.payload, 8, as: UInt32.self) == 0xC000_0059)
            #expect(server.phase == .awaitingProtocolVersion)
        }
        #expect(try answer(server.handle(inband(StorageVersionRequest(version: .win8).packet))).vstor.status == .success)
        #expect(server.phase == .initializing(.win8))
        // Win7 and older are never accepted by the default configuration.
        var strict = StorageServer(controller: try controller())
        _ = strict.handle(inband(VStorPacket(operation: .beginInitialization, flags: .requestCompletion)))
        #expect(try answer(strict.handle(inband(StorageVersionRequest(version: .win7).packet))).vstor.status == .revisionMismatch)
    }

    @Test("Without sub-channels the properties clear the multi-channel flag")
    func singleChannelProperties() throws {
        var server = StorageServer(controller: try controller())
        _ = server.handle(inband(VStorPacket(operation: .beginInitialization, flags: .requestCompletion)))
        _ = server.handle(inband(StorageVersionRequest(version: .win10).packet))
        let vstor = try answer(server.handle(inband(VStorPacket(operation: .queryProperties, flags: .requestCompletion)))).vstor
        let properties = try StorageChannelProperties(parsing: vstor)
        #expect(properties.maximumSubChannels == 0 && properties.flags == [])
    }

    @Test("CREATE_SUB_CHANNELS after END: answered first, then the offers; bounded by the maximum")
    func subChannels() throws {
        var server = readyServer(try controller())
        let actions = server.handle(inband(SubChannelRequest(count: 2).packet))
        #expect(actions.count == 2)
        guard case .send(let packet) = actions[0], case .createSubChannels(2) = actions[1] else {
            Issue.record("unexpected actions \(actions)")
            return
        }
        #expect(try VStorPacket(parsing: packet.payload).status == .success)
        #expect(server.subChannelsCreated == 2)
        // One more fits, two do not.
        #expect(try answer(server.handle(inband(SubChannelRequest(count: 2).packet))).vstor.status == .invalidParameter)
        #expect(server.handle(inband(SubChannelRequest(count: 1).packet)).contains(.createSubChannels(1)))
        #expect(try answer(server.handle(inband(SubChannelRequest(count: 0).packet))).vstor.status == .invalidParameter)
    }

    @Test("CREATE_SUB_CHANNELS before END or on a sub-channel is refused with INVALID_DEVICE_STATE")
    func subChannelsOutOfPlace() throws {
        var server = StorageServer(controller: try controller(), configuration: .init(maximumSubChannels: 3))
        _ = server.handle(inband(VStorPacket(operation: .beginInitialization, flags: .requestCompletion)))
        let early = server.handle(inband(SubChannelRequest(count: 1).packet))
        #expect(try answer(early).vstor.status == .invalidDeviceState)
        #expect(!early.contains(.createSubChannels(1)))
        var sub = StorageServer(controller: try controller(), configuration: .init(maximumSubChannels: 3), role: .subChannel(.win10))
        #expect(try answer(sub.handle(inband(SubChannelRequest(count: 1).packet))).vstor.status == .invalidDeviceState)
    }

    @Test("A sub-channel is ready with its primary's version: SRBs run without initialization")
    func subChannelServes() throws {
        var sub = StorageServer(controller: try controller(), role: .subChannel(.win8_1))
        #expect(sub.phase == .ready(.win8_1))
        let completion = try #require(execute(&sub, srb(InquiryCDB().bytes, length: 36)))
        #expect(completion.block.srbStatus == .success && completion.data.count == 36)
        #expect(try answer(sub.handle(inband(VStorPacket(operation: .beginInitialization, flags: .requestCompletion)))).vstor.status
            == .invalidDeviceState)
    }

    @Test("RESET_BUS (transaction U64_MAX-3) is answered with status 0; requests in flight still complete")
    func resetBus() throws {
        var server = readyServer(try controller())
        let read = requests(server.handle(srb(ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 8).bytes,
                                              length: 4096, transactionID: 7)))
        try #require(read.count == 1)
        var reset = SCSIRequestBlock(cdb: [], dataDirection: .noData, dataTransferLength: 0).packet()
        reset.operation = .resetBus
        let (packet, vstor) = try answer(server.handle(inband(reset, transactionID: StorageChannelConstants.resetTransactionID)))
        #expect(packet.transactionID == UInt64.max - 3 && vstor.status == .success && vstor.operation == .completeIO)
        let done = try answer(server.complete(read[0].token, result: .completed(byteCount: 4096)))
        #expect(done.packet.transactionID == 7)
        for operation in [StorageOperation.resetLUN, .resetAdapter] {
            #expect(try answer(server.handle(inband(VStorPacket(operation: operation, flags: .requestCompletion)))).vstor.status == .success)
        }
    }

    @Test("Out-of-order packets are answered with an error status, never dropped")
    func outOfOrder() throws {
        var server = StorageServer(controller: try controller())
        #expect(try answer(server.handle(inband(StorageVersionRequest(version: .win10).packet))).vstor.status == .invalidDeviceState)
        #expect(try answer(server.handle(inband(VStorPacket(operation: .endInitialization, flags: .requestCompletion)))).vstor.status
            == .invalidDeviceState)
        // An SRB before END_INITIALIZATION completes with INVALID_REQUEST.
        let early = server.handle(srb(TestUnitReadyCDB().bytes, transactionID: 5))
        let (packet, vstor) = try answer(early)
        #expect(packet.transactionID == 5 && vstor.status == .invalidDeviceState)
        #expect(packet.payload[14] == SRBStatus.invalidRequest.rawValue)
        _ = server.handle(inband(VStorPacket(operation: .beginInitialization, flags: .requestCompletion)))
        #expect(try answer(server.handle(inband(VStorPacket(operation: .beginInitialization, flags: .requestCompletion)))).vstor.status
            == .invalidDeviceState)
        // Host-to-guest operations, FCHBA_DATA and unknown operations are not supported.
        for operation in [StorageOperation.completeIO, .enumerateBus, .removeDevice, .fibreChannelHBAData, StorageOperation(rawValue: 77)] {
            #expect(try answer(server.handle(inband(VStorPacket(operation: operation, flags: .requestCompletion)))).vstor.status
                == .notSupported)
        }
    }

    @Test("Packets that do not ask for an answer get none, and are reported")
    func noAnswerRequested() throws {
        var server = readyServer(try controller())
        let actions = server.handle(inband(VStorPacket(operation: .queryProperties), flags: []))
        #expect(sent(actions).isEmpty)
        let srbActions = server.handle(StorageIncomingPacket(
            type: .inband, flags: [], transactionID: 9,
            payload: SCSIRequestBlock(cdb: TestUnitReadyCDB().bytes, dataDirection: .noData, dataTransferLength: 0).packet().bytes))
        #expect(sent(srbActions).isEmpty && requests(srbActions).isEmpty)
        #expect(srbActions.contains { if case .protocolViolation = $0 { true } else { false } })
    }

    @Test("INQUIRY completes with exactly the fields storvsc_on_io_completion reads")
    func inquiryCompletion() throws {
        var server = readyServer(try controller())
        let completion = try #require(execute(&server, srb(InquiryCDB(allocationLength: 96).bytes, target: 0, lun: 0,
                                                         length: 96, transactionID: 0x1_0001)))
        #expect(completion.packet.transactionID == 0x1_0001)
        #expect(completion.data.count == 36)
        let bytes = completion.packet.payload
        #expect(le(bytes, 0, as: UInt32.self) == 1)  // COMPLETE_IO
        #expect(le(bytes, 8, as: UInt32.self) == 0)  // NTSTATUS
        #expect(bytes[14] == 0x01 && bytes[15] == 0x00)  // SRB SUCCESS, GOOD
        #expect(bytes[21] == 0)  // no sense
        #expect(le(bytes, 24, as: UInt32.self) == 36)  // bytes moved
        #expect(bytes[17] == 0 && bytes[18] == 0 && bytes[19] == 0)
    }

    @Test("CHECK CONDITION carries AUTOSENSE_VALID (0x84), scsi status 2 and 18 bytes of fixed sense at @28")
    func checkConditionCompletion() throws {
        var server = readyServer(try controller())
        let cdb = ReadWriteCDB(direction: .read, logicalBlockAddress: 2047, transferLength: 8).bytes
        let completion = try #require(execute(&server, srb(cdb, length: 4096)))
        let bytes = completion.packet.payload
        #expect(bytes[14] == 0x84 && bytes[15] == 0x02)
        #expect(bytes[21] == 18)
        #expect(le(bytes, 24, as: UInt32.self) == 0)
        #expect(Array(bytes[28..<46]) == SenseData.illegalRequest(.logicalBlockAddressOutOfRange).bytes)
        #expect(completion.sense?.additional == .logicalBlockAddressOutOfRange)
    }

    @Test("Sense is cut to the guest's sense buffer")
    func senseBufferRespected() throws {
        var server = readyServer(try controller())
        var block = SCSIRequestBlock(cdb: [0x4D, 0, 0, 0, 0, 0, 0, 0, 0, 0], dataDirection: .noData, dataTransferLength: 0)
        block.senseInfoLength = 8
        let completion = try #require(execute(&server, StorageIncomingPacket(type: .inband, flags: .completionRequested,
                                                                              transactionID: 3, payload: block.packet().bytes)))
        #expect(completion.block.senseInfoLength == 8)
        #expect(completion.packet.payload[36..<48].allSatisfy { $0 == 0 })
    }

    @Test("READ and WRITE go to the driver with offset, length, FUA and the guest range; completion reports the bytes")
    func readWriteRequests() throws {
        var server = readyServer(try controller())
        let read = requests(server.handle(srb(ReadWriteCDB(direction: .read, logicalBlockAddress: 16, transferLength: 16).bytes,
                                              length: 8192, transactionID: 11, byteOffset: 512)))
        let request = try #require(read.first)
        #expect(request.operation == .read(offset: 8192, length: 8192, forceUnitAccess: false))
        #expect(request.buffer == GPARange(byteCount: 8192, byteOffset: 512, pfns: [0x100, 0x101, 0x102]))
        #expect(request.address == .init(target: 0, lun: 0) && request.transactionID == 11)
        let done = try answer(server.complete(request.token, result: .completed(byteCount: 8192)))
        #expect(done.packet.payload[14] == 0x01 && le(done.packet.payload, 24, as: UInt32.self) == 8192)
        let write = requests(server.handle(srb(ReadWriteCDB(direction: .write, logicalBlockAddress: 0, transferLength: 1,
                                                            forceUnitAccess: true).bytes,
                                               direction: .write, length: 512)))
        #expect(write.first?.operation == .write(offset: 0, length: 512, forceUnitAccess: true))
    }

    @Test("A write-through disk turns every write into FUA")
    func writeThroughFUA() throws {
        var server = readyServer(try controller(writeCache: false))
        let write = requests(server.handle(srb(ReadWriteCDB(direction: .write, logicalBlockAddress: 0, transferLength: 8).bytes,
                                               direction: .write, length: 4096)))
        #expect(write.first?.operation == .write(offset: 0, length: 4096, forceUnitAccess: true))
    }

    @Test("SYNCHRONIZE CACHE is a flush request")
    func flushRequest() throws {
        var server = readyServer(try controller())
        let flush = requests(server.handle(srb(SynchronizeCacheCDB().bytes)))
        #expect(flush.first?.operation == .flush)
        #expect(flush.first?.buffer == nil)
    }

    @Test("UNMAP: the parameter list is read from the guest, validated, then punched")
    func unmapFlow() throws {
        var server = readyServer(try controller())
        let first = requests(server.handle(srb(UnmapCDB(parameterListLength: 24).bytes, direction: .write, length: 24)))
        let fetch = try #require(first.first)
        #expect(fetch.operation == .readParameterList(length: 24))
        let list = UnmapParameterList(descriptors: [UnmapBlockDescriptor(logicalBlockAddress: 8, blockCount: 8)]).bytes
        let punch = try #require(requests(server.parameterListArrived(fetch.token, list)).first)
        #expect(punch.operation == .unmap([ByteRange(offset: 4096, length: 4096)]))
        let done = try answer(server.complete(punch.token, result: .completed(byteCount: 0)))
        #expect(done.packet.payload[14] == 0x01)
        #expect(server.outstandingCount == 0)
        // An invalid list completes with CHECK CONDITION.
        let again = try #require(requests(server.handle(srb(UnmapCDB(parameterListLength: 24).bytes, direction: .write, length: 24))).first)
        let bad = UnmapParameterList(descriptors: [UnmapBlockDescriptor(logicalBlockAddress: 4000, blockCount: 8)]).bytes
        let refused = try answer(server.parameterListArrived(again.token, bad))
        #expect(refused.packet.payload[14] == 0x84 && refused.packet.payload[28 + 12] == 0x21)
    }

    @Test("Back-end failures become the sense a disk reports")
    func failures() throws {
        var server = readyServer(try controller())
        func fail(_ cdb: [UInt8], _ direction: SRBDataDirection, _ failure: StorageIOFailure) throws -> [UInt8] {
            let request = try #require(requests(server.handle(srb(cdb, direction: direction, length: 512))).first)
            return try answer(server.complete(request.token, result: .failed(failure))).packet.payload
        }
        let read = ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 1).bytes
        let write = ReadWriteCDB(direction: .write, logicalBlockAddress: 0, transferLength: 1).bytes
        let medium = try fail(read, .read, .mediumError)
        #expect(medium[14] == 0x84 && medium[30] == 0x03 && medium[40] == 0x11)
        let writeError = try fail(write, .write, .mediumError)
        #expect(writeError[30] == 0x03 && writeError[40] == 0x0C)
        let space = try fail(write, .write, .outOfSpace)
        #expect(space[30] == 0x07 && space[40] == 0x27 && space[41] == 0x07)
        let memory = try fail(read, .read, .guestMemory)
        #expect(memory[14] == 0x06)
        let short = try #require(requests(server.handle(srb(read, direction: .read, length: 512))).first)
        #expect(try answer(server.complete(short.token, result: .completed(byteCount: 100))).packet.payload[30] == 0x03)
        #expect(StorageIOFailure(errno: 5) == .mediumError && StorageIOFailure(errno: 28) == .outOfSpace)
        #expect(StorageIOFailure(errno: 14) == .guestMemory && StorageIOFailure(errno: 22) == .deviceFailure)
    }

    @Test("A token completes once; repeats and unknown tokens are reported, not answered")
    func staleTokens() throws {
        var server = readyServer(try controller())
        let request = try #require(requests(server.handle(srb(SynchronizeCacheCDB().bytes))).first)
        #expect(sent(server.complete(request.token, result: .completed(byteCount: 0))).count == 1)
        #expect(sent(server.complete(request.token, result: .completed(byteCount: 0))).isEmpty)
        #expect(sent(server.complete(StorageRequestToken(slot: 99, generation: 0), result: .completed(byteCount: 0))).isEmpty)
        #expect(sent(server.parameterListArrived(request.token, [])).isEmpty)
    }

    @Test("Beyond the outstanding limit, SRBs complete BUSY (srb 0x05, scsi 0x08) for Linux to retry")
    func busy() throws {
        var server = readyServer(try controller(), configuration: .init(maximumOutstandingRequests: 2))
        let read = ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 1).bytes
        #expect(requests(server.handle(srb(read, length: 512, transactionID: 1))).count == 1)
        #expect(requests(server.handle(srb(read, length: 512, transactionID: 2))).count == 1)
        let (packet, vstor) = try answer(server.handle(srb(read, length: 512, transactionID: 3)))
        #expect(packet.transactionID == 3 && packet.payload[14] == 0x05 && packet.payload[15] == 0x08)
        #expect(vstor.status.rawValue == 0x8000_0011)
        #expect(server.outstandingCount == 2)
        // Immediate answers need no slot.
        #expect(try #require(execute(&server, srb(TestUnitReadyCDB().bytes))).block.srbStatus == .success)
    }

    @Test("Hostile buffers: range shorter than the transfer, page count, offset, size, missing or unexpected buffers")
    func hostileBuffers() throws {
        var server = readyServer(try controller())
        let read = ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 8).bytes
        func status(_ packet: StorageIncomingPacket) throws -> UInt8 { try answer(server.handle(packet)).packet.payload[14] }
        var packet = srb(read, length: 4096)
        packet.buffer = .range(GPARange(byteCount: 2048, byteOffset: 0, pfns: [1]))
        #expect(try status(packet) == 0x06)
        packet.buffer = .range(GPARange(byteCount: 4096, byteOffset: 0, pfns: [1, 2]))
        #expect(try status(packet) == 0x06)
        packet.buffer = .range(GPARange(byteCount: 4096, byteOffset: 4096, pfns: [1, 2]))
        #expect(try status(packet) == 0x06)
        packet.buffer = .range(GPARange(byteCount: 0x80000, byteOffset: 0, pfns: (0..<128).map { $0 }))
        #expect(try status(packet) == 0x06)
        packet.buffer = .malformed(.rangeCount(2))
        #expect(try status(packet) == 0x06)
        packet.buffer = .none
        #expect(try status(packet) == 0x06)
        var inbandWithBuffer = srb(TestUnitReadyCDB().bytes)
        inbandWithBuffer.buffer = .range(GPARange(byteCount: 512, byteOffset: 0, pfns: [1]))
        #expect(try status(inbandWithBuffer) == 0x06)
        // An in-band SRB claiming a transfer has no buffer.
        let claim = SCSIRequestBlock(cdb: read, dataDirection: .read, dataTransferLength: 4096).packet().bytes
        #expect(try status(StorageIncomingPacket(type: .inband, flags: .completionRequested, transactionID: 1, payload: claim)) == 0x06)
        #expect(server.outstandingCount == 0)
    }

    @Test("Hostile request blocks: CDB lengths, transfer sizes, directions, short packets, wrong packet types")
    func hostileRequestBlocks() throws {
        var server = readyServer(try controller())
        func status(_ packet: StorageIncomingPacket) throws -> UInt8 { try answer(server.handle(packet)).packet.payload[14] }
        var block = SCSIRequestBlock(cdb: TestUnitReadyCDB().bytes, dataDirection: .noData, dataTransferLength: 0)
        for length: UInt8 in [0, 17, 255] {
            block.cdbLength = length
            #expect(try status(StorageIncomingPacket(type: .inband, flags: .completionRequested, transactionID: 1,
                                                     payload: block.packet().bytes)) == 0x06)
        }
        // READ(10) in a 6-byte CDB.
        let truncated = SCSIRequestBlock(cdb: [0x28, 0, 0, 0, 0, 1], dataDirection: .read, dataTransferLength: 512)
        #expect(try status(StorageIncomingPacket(type: .gpaDirect, flags: .completionRequested, transactionID: 1,
                                                 payload: truncated.packet().bytes,
                                                 buffer: .range(GPARange(byteCount: 512, byteOffset: 0, pfns: [1])))) == 0x06)
        // Above max_transfer_bytes.
        #expect(try status(srb(ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 8).bytes,
                               length: 0x40000 + 4096)) == 0x06)
        // A READ whose blocks exceed the maximum transfer, within a legal buffer: INVALID FIELD IN CDB.
        let big = try answer(server.handle(srb(ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 1024).bytes,
                                               length: 0x40000)))
        #expect(big.packet.payload[14] == 0x84 && big.packet.payload[40] == 0x24)
        // A READ with a write buffer, and data without a direction.
        #expect(try status(srb(ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 1).bytes,
                               direction: .write, length: 512)) == 0x06)
        #expect(try status(srb(InquiryCDB().bytes, direction: .noData, length: 36)) == 0x06)
        // A READ into a buffer shorter than its blocks.
        #expect(try status(srb(ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 2).bytes, length: 512)) == 0x06)
        // Short payloads still get an answer when they asked for one.
        let full = srb(TestUnitReadyCDB().bytes).payload
        for length in [0, 4, 11, 20, 40] {
            let reply = try answer(server.handle(StorageIncomingPacket(type: .inband, flags: .completionRequested, transactionID: 8,
                                                                       payload: Array(full.prefix(length)))))
            #expect(reply.vstor.status == .invalidParameter)
            #expect(reply.packet.transactionID == 8)
        }
        // Packet types other than in-band and GPA-direct.
        for type in [PacketType.completion, .transferPages, PacketType(rawValue: 0xFFFF)] {
            let reply = try answer(server.handle(StorageIncomingPacket(type: type, flags: .completionRequested, transactionID: 2, payload: full)))
            #expect(reply.vstor.status == .invalidParameter && reply.packet.payload[14] == 0x06)
        }
        #expect(server.outstandingCount == 0)
    }

    @Test("Incoming packets are split from ring bytes: payload at offset8, GPA-direct range from the header")
    func incomingFromRing() throws {
        let header = StorageGPADirectHeader(byteCount: 4096, byteOffset: 0, pfns: [0x1234]).bytes
        let payload = SCSIRequestBlock(cdb: ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 8).bytes,
                                       dataDirection: .read, dataTransferLength: 4096).packet().bytes
        let offset8 = UInt16((16 + header.count) / 8)
        let descriptor = PacketDescriptor(type: .gpaDirect, dataOffset8: offset8, length8: offset8 + 8,
                                          flags: .completionRequested, transactionID: 77)
        let bytes = descriptor.bytes + header + payload
        let packet = StorageIncomingPacket(descriptor: descriptor, packet: bytes, maximumPages: 65)
        #expect(packet.payload == payload && packet.transactionID == 77)
        #expect(packet.buffer == .range(GPARange(byteCount: 4096, byteOffset: 0, pfns: [0x1234])))
        var twoRanges = bytes
        twoRanges[20] = 2
        let bad = StorageIncomingPacket(descriptor: descriptor, packet: twoRanges, maximumPages: 65)
        #expect(bad.buffer == .malformed(.rangeCount(2)))
        var server = readyServer(try controller())
        #expect(try answer(server.handle(bad)).packet.payload[14] == 0x06)
    }

    @Test("Capacity change: ENUMERATE_BUS is announced once, and the next command reports 2A/09")
    func capacityChangeAnnounced() throws {
        let controller = try controller()
        var server = readyServer(controller)
        #expect(server.pollBusChanges().isEmpty)
        controller.resize(target: 0, lun: 0, blockCount: 4096)
        let notes = sent(server.pollBusChanges())
        try #require(notes.count == 1)
        #expect(notes[0].transactionID == 0 && notes[0].type == .inband && notes[0].payload.count == 64)
        #expect(le(notes[0].payload, 0, as: UInt32.self) == 11)
        #expect(server.pollBusChanges().isEmpty)
        let completion = try #require(execute(&server, srb(ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 1).bytes,
                                                           length: 512)))
        #expect(completion.block.srbStatus.rawValue == 0x84 && completion.sense == .unitAttention(.capacityDataHasChanged))
    }

    @Test("Hot-remove: ENUMERATE_BUS, then INVALID_LUN (0x20) for TEST UNIT READY on the removed path-0 LUN")
    func hotRemove() throws {
        let controller = try controller()
        var server = readyServer(controller)
        controller.detach(target: 0, lun: 0)
        #expect(sent(server.pollBusChanges()).count == 1)
        let tur = try #require(execute(&server, srb(TestUnitReadyCDB().bytes)))
        #expect(tur.block.srbStatus == .invalidLUN && tur.block.scsiStatus == .good && tur.block.senseInfoLength == 0)
        let inquiry = try #require(execute(&server, srb(InquiryCDB().bytes, length: 36)))
        #expect(inquiry.data.first == 0x7F)
        // Never INVALID_LUN on another path: storvsc would remove the path-0 disk.
        let other = try #require(execute(&server, srb(TestUnitReadyCDB().bytes, path: 2)))
        #expect(other.block.srbStatus.rawValue == 0x84)
        // A primary that has not finished initialization announces nothing.
        var fresh = StorageServer(controller: controller)
        try controller.attach(testDisk(), target: 0, lun: 0)
        #expect(fresh.pollBusChanges().isEmpty)
    }

    @Test("The Linux scan: every path and target answers INQUIRY and REPORT LUNS; only 0:0:0 is a disk")
    func linuxScan() throws {
        var server = readyServer(try controller())
        var disks: [StorageController.Address] = []
        for path: UInt8 in 0..<8 {
            for target: UInt8 in 0..<2 {
                let inquiry = try #require(execute(&server, srb(InquiryCDB().bytes, path: path, target: target, length: 36)))
                #expect(inquiry.block.srbStatus == .success && inquiry.data.count == 36, "\(path):\(target) \(String(describing: inquiry.sense))")
                let report = try #require(execute(&server, srb(ReportLUNsCDB().bytes, path: path, target: target, length: 4096)))
                #expect(report.block.srbStatus == .success)
                for lun in try ReportLUNsData(parsing: report.data).luns {
                    let unit = try #require(execute(&server, srb(InquiryCDB().bytes, path: path, target: target, lun: UInt8(lun), length: 36)))
                    if unit.data.first == 0 { disks.append(.init(path: path, target: target, lun: UInt8(lun))) }
                }
            }
        }
        #expect(disks == [.init(target: 0, lun: 0)])
    }
}
