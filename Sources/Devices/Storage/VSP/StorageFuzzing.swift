import FuzzSupport
import StorageProtocol
import VMBusProtocol

/// A seeded generator of storage packets, valid and mutated, for fuzzing `StorageServer`; and a
/// harness that drives a server with them and checks its promises. The unit tests run a short
/// loop; a long-form command can run millions of cases with the same code.
public struct StoragePacketGenerator: Sendable {
    private var random: FuzzRandom
    private var nextTransactionID: UInt64 = 1

    public init(seed: UInt64) { random = FuzzRandom(seed: seed) }

    /// The next word of the seeded sequence (`FuzzRandom`).
    public mutating func next() -> UInt64 { random.next() }

    /// A value in `0..<bound` (bound > 0).
    public mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(max(bound, 1))) }

    /// True with probability `numerator / denominator`.
    public mutating func chance(_ numerator: Int, in denominator: Int) -> Bool { below(denominator) < numerator }

    public mutating func bytes(_ count: Int) -> [UInt8] { random.bytes(count) }

    /// A fresh transaction ID (never 0, so answers can be matched to packets).
    public mutating func transactionID() -> UInt64 {
        defer { nextTransactionID += 1 }
        return nextTransactionID
    }

    /// One of the initialization requests, most of them well-formed.
    public mutating func initializationPacket() -> StorageIncomingPacket {
        var packet: VStorPacket
        switch below(6) {
        case 0: packet = VStorPacket(operation: .beginInitialization, flags: .requestCompletion)
        case 1:
            let versions: [StorageProtocolVersion] = [.win10, .win8_1, .win8, .win7, .win6, StorageProtocolVersion(rawValue: UInt16(truncatingIfNeeded: next()))]
            packet = StorageVersionRequest(version: versions[below(versions.count)]).packet
        case 2: packet = VStorPacket(operation: .queryProperties, flags: .requestCompletion)
        case 3: packet = VStorPacket(operation: .endInitialization, flags: .requestCompletion)
        case 4: packet = SubChannelRequest(count: UInt16(below(6))).packet
        default:
            let operations: [StorageOperation] = [.resetBus, .resetLUN, .resetAdapter, .enumerateBus, .removeDevice, .completeIO,
                                                  .fibreChannelHBAData, StorageOperation(rawValue: UInt32(truncatingIfNeeded: next()))]
            packet = VStorPacket(operation: operations[below(operations.count)], flags: .requestCompletion)
        }
        return StorageIncomingPacket(type: .inband, flags: .completionRequested, transactionID: transactionID(), payload: packet.bytes)
    }

    /// A CDB of one of the commands the device implements (fields random but mostly
    /// plausible), or a random opcode.
    public mutating func cdb(blockCount: UInt64) -> [UInt8] {
        let lba: UInt64 = chance(1, in: 4) ? next() : (blockCount > 0 ? next() % (blockCount + 8) : 0)
        let blocks = UInt32(chance(1, in: 8) ? next() & 0xFFFF : next() % 128)
        switch below(14) {
        case 0: return TestUnitReadyCDB().bytes
        case 1: return InquiryCDB(allocationLength: UInt16(below(300))).bytes
        case 2:
            let pages: [UInt8] = [0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2, 0x89, UInt8(truncatingIfNeeded: next())]
            return InquiryCDB(vitalProductData: true, pageCode: pages[below(pages.count)], allocationLength: UInt16(below(300))).bytes
        case 3: return ReportLUNsCDB(selectReport: UInt8(below(4)), allocationLength: UInt32(below(5000))).bytes
        case 4: return ReadCapacity10CDB().bytes
        case 5: return ReadCapacity16CDB(allocationLength: UInt32(below(64))).bytes
        case 6: return RequestSenseCDB(allocationLength: UInt8(below(32))).bytes
        case 7:
            return ModeSenseCDB(isTenByte: chance(1, in: 2), disableBlockDescriptors: chance(1, in: 2),
                                longLBAAccepted: chance(1, in: 2), pageControl: PageControl(rawValue: UInt8(below(4))),
                                pageCode: chance(3, in: 4) ? [0x08, 0x3F][below(2)] : UInt8(below(64)),
                                subpageCode: chance(3, in: 4) ? 0 : UInt8(truncatingIfNeeded: next()),
                                allocationLength: UInt16(below(300))).bytes
        case 8, 9:
            let sizes = [6, 10, 12, 16]
            return ReadWriteCDB(direction: chance(1, in: 2) ? .read : .write, size: sizes[below(4)],
                                logicalBlockAddress: lba, transferLength: blocks, forceUnitAccess: chance(1, in: 3)).bytes
        case 10: return SynchronizeCacheCDB(isSixteenByte: chance(1, in: 4), logicalBlockAddress: lba, blockCount: blocks).bytes
        case 11: return UnmapCDB(anchor: chance(1, in: 10), parameterListLength: UInt16(chance(3, in: 4) ? 24 : below(100))).bytes
        case 12: return StartStopUnitCDB(start: chance(3, in: 4), powerCondition: chance(3, in: 4) ? 0 : UInt8(below(16))).bytes
        default:
            var cdb = bytes(16)
            cdb[0] = UInt8(truncatingIfNeeded: next())
            return cdb
        }
    }

    /// An EXECUTE_SRB to a random address, usually a present disk, with a buffer that usually
    /// fits the command.
    public mutating func srbPacket(blockCount: UInt64, blockSize: Int, maximumTransferBytes: Int) -> StorageIncomingPacket {
        let cdb = self.cdb(blockCount: blockCount)
        var length = 0
        let opcode = SCSIOperationCode(rawValue: cdb[0])
        switch opcode {
        case .read6, .read10, .read12, .read16, .write6, .write10, .write12, .write16:
            do {
                length = min(Int(try ReadWriteCDB(parsing: cdb).transferLength) * blockSize, maximumTransferBytes)
            } catch {
                length = 0
            }
        case .unmap: length = 24
        case .testUnitReady, .synchronizeCache10, .synchronizeCache16, .startStopUnit: length = 0
        default: length = below(600)
        }
        if chance(1, in: 10) { length = below(maximumTransferBytes + 8192) }
        let write = [SCSIOperationCode.write6, .write10, .write12, .write16, .unmap].contains(opcode)
        var direction: SRBDataDirection = length == 0 ? .noData : (write ? .write : .read)
        if chance(1, in: 20) { direction = SRBDataDirection(rawValue: UInt8(below(4))) }
        let target = chance(7, in: 8) ? UInt8(below(2)) : UInt8(truncatingIfNeeded: next())
        let lun = chance(7, in: 8) ? UInt8(below(3)) : UInt8(truncatingIfNeeded: next())
        let path = chance(7, in: 8) ? 0 : UInt8(below(8))
        let block = SCSIRequestBlock(pathID: path, targetID: target, lun: lun, cdb: cdb, dataDirection: direction,
                                     dataTransferLength: UInt32(length))
        let payload = block.packet().bytes
        let transaction = transactionID()
        guard length > 0 || chance(1, in: 10) else {
            return StorageIncomingPacket(type: .inband, flags: .completionRequested, transactionID: transaction, payload: payload)
        }
        let offset = UInt32(chance(3, in: 4) ? 0 : below(4096) & ~511)
        var byteCount = UInt32(length)
        if chance(1, in: 10) { byteCount = UInt32(truncatingIfNeeded: next() % UInt64(2 * maximumTransferBytes)) }
        var pageCount = VMBusConstants.pageCount(byteOffset: offset, byteCount: byteCount)
        if chance(1, in: 20) { pageCount = below(pageCount + 2) }
        let pfns = (0..<min(pageCount, 80)).map { _ in next() % 4096 }
        let range = GPARange(byteCount: byteCount, byteOffset: chance(1, in: 30) ? UInt32(truncatingIfNeeded: next()) : offset, pfns: pfns)
        return StorageIncomingPacket(type: .gpaDirect, flags: .completionRequested, transactionID: transaction, payload: payload,
                                     buffer: chance(1, in: 30) ? .malformed(.rangeCount(2)) : .range(range))
    }

    /// `packet` with random damage: flipped bytes, a cut or padded payload, another packet
    /// type, flags or buffer.
    public mutating func mutate(_ packet: StorageIncomingPacket) -> StorageIncomingPacket {
        var packet = packet
        for _ in 0..<(1 + below(3)) {
            switch below(7) {
            case 0, 1:
                if !packet.payload.isEmpty {
                    packet.payload[below(packet.payload.count)] ^= UInt8(truncatingIfNeeded: next() | 1)
                }
            case 2: packet.payload = Array(packet.payload.prefix(below(packet.payload.count + 1)))
            case 3: packet.payload += bytes(below(40))
            case 4: packet.type = [.inband, .gpaDirect, .completion, .transferPages, PacketType(rawValue: UInt16(truncatingIfNeeded: next()))][below(5)]
            case 5: packet.flags = chance(1, in: 2) ? [] : .completionRequested
            default:
                packet.buffer = [.none, .malformed(.rangeOffset(5000)),
                                 .range(GPARange(byteCount: UInt32(truncatingIfNeeded: next()), byteOffset: UInt32(below(5000)),
                                                 pfns: (0..<below(4)).map { _ in next() }))][below(3)]
            }
        }
        return packet
    }
}

/// Drives a `StorageServer` with generated and mutated packets, carries out its requests with
/// random results, and checks what it promises: every packet that asks for an answer gets
/// exactly one, every answer is a 64-byte COMPLETE_IO, requests stay within their buffer and
/// the disk, and no more than the limit are outstanding.
public struct StorageFuzzHarness {
    /// What a run did and what it found.
    public struct Report: Sendable, CustomStringConvertible {
        public var packets = 0
        public var answers = 0
        public var requests = 0
        public var notifications = 0
        /// Broken promises; empty when the server behaved.
        public var failures: [String] = []

        public var description: String {
            "\(packets) packets, \(answers) answers, \(requests) requests, \(notifications) notifications, \(failures.count) failures"
        }
    }

    /// Runs `iterations` packets from `seed`.
    public static func run(seed: UInt64, iterations: Int) -> Report {
        var generator = StoragePacketGenerator(seed: seed)
        var report = Report()
        let controller = StorageController(maximumTransferBytes: 0x40000)
        let blockCount: UInt64 = 4096
        let disks = [
            SCSIDiskConfiguration(serialNumber: "fuzz-0", blockCount: blockCount, discardSupported: true),
            SCSIDiskConfiguration(serialNumber: "fuzz-1", blockCount: blockCount, readOnly: true),
            SCSIDiskConfiguration(serialNumber: "fuzz-2", blockSize: 4096, blockCount: blockCount / 8, writeCacheEnabled: false),
        ]
        for (index, disk) in disks.enumerated() {
            do {
                try controller.attach(disk, target: UInt8(index % 2), lun: UInt8(index))
            } catch {
                report.failures.append("attach: \(error)")
                return report
            }
        }
        let limit = 32
        var server = StorageServer(controller: controller,
                                   configuration: .init(maximumSubChannels: 3, maximumOutstandingRequests: limit))
        var expected: [UInt64: Int] = [:]
        var outstanding: [StorageIORequest] = []

        func check(_ actions: [StorageAction], _ report: inout Report) {
            for action in actions {
                switch action {
                case .send(let packet):
                    if packet.transactionID == StorageChannelConstants.unsolicitedTransactionID {
                        report.notifications += 1
                        continue
                    }
                    report.answers += 1
                    if packet.type != .completion || packet.vstor.operation != .completeIO {
                        report.failures.append("answer to \(packet.transactionID) is not a COMPLETE_IO completion")
                    }
                    if expected[packet.transactionID, default: 0] == 0 {
                        report.failures.append("unexpected answer to \(packet.transactionID)")
                    }
                    expected[packet.transactionID, default: 0] -= 1
                case .execute(let request):
                    report.requests += 1
                    validate(request, &report)
                    outstanding.append(request)
                case .createSubChannels(let count):
                    if count == 0 || count > 3 { report.failures.append("\(count) sub-channels") }
                case .protocolViolation:
                    break
                }
            }
            if server.outstandingCount > limit { report.failures.append("\(server.outstandingCount) outstanding") }
        }

        func validate(_ request: StorageIORequest, _ report: inout Report) {
            let capacity = blockCount * 512
            let buffer = Int(request.buffer?.byteCount ?? 0)
            switch request.operation {
            case .copyToGuest(let bytes):
                if bytes.count > buffer { report.failures.append("copy of \(bytes.count) into \(buffer)") }
            case .readParameterList(let length):
                if length > buffer { report.failures.append("parameter list of \(length) from \(buffer)") }
            case .read(let offset, let length, _), .write(let offset, let length, _):
                if length > buffer || length > 0x40000 || offset + UInt64(length) > capacity {
                    report.failures.append("transfer of \(length) at \(offset) with buffer \(buffer)")
                }
            case .unmap(let ranges):
                for range in ranges where range.offset + range.length > capacity {
                    report.failures.append("unmap past the end: \(range)")
                }
            case .flush:
                break
            }
        }

        func finish(_ request: StorageIORequest, _ generator: inout StoragePacketGenerator, _ report: inout Report) {
            let actions: [StorageAction]
            if case .readParameterList(let length) = request.operation, generator.chance(4, in: 5) {
                var list = UnmapParameterList(descriptors: (0..<generator.below(3)).map { _ in
                    UnmapBlockDescriptor(logicalBlockAddress: generator.next() % 5000, blockCount: UInt32(generator.below(64)))
                }).bytes
                if generator.chance(1, in: 4) { list = generator.mutate(StorageIncomingPacket(type: .inband, flags: [], transactionID: 0, payload: list)).payload }
                actions = server.parameterListArrived(request.token, Array(list.prefix(length)))
            } else {
                let results: [StorageIOResult] = [.completed(byteCount: expectedBytes(request)), .completed(byteCount: generator.below(4096)),
                                                  .failed(.mediumError), .failed(.outOfSpace), .failed(.guestMemory), .failed(.deviceFailure)]
                actions = server.complete(request.token, result: generator.chance(3, in: 4) ? results[0] : results[generator.below(results.count)])
            }
            check(actions, &report)
            if generator.chance(1, in: 50) {
                // A repeated completion must be ignored.
                let repeated = server.complete(request.token, result: .completed(byteCount: 0))
                if repeated.contains(where: { if case .send = $0 { true } else { false } }) {
                    report.failures.append("\(request.token) answered twice")
                }
            }
        }

        for iteration in 0..<iterations {
            var packet: StorageIncomingPacket
            if server.phase == .awaitingBeginInitialization || generator.chance(1, in: 8) {
                packet = generator.initializationPacket()
            } else {
                packet = generator.srbPacket(blockCount: blockCount, blockSize: 512, maximumTransferBytes: 0x40000)
            }
            if generator.chance(1, in: 4) { packet = generator.mutate(packet) }
            report.packets += 1
            if packet.flags.contains(.completionRequested) { expected[packet.transactionID, default: 0] += 1 }
            check(server.handle(packet), &report)
            if generator.chance(1, in: 200) {
                if generator.chance(1, in: 2) {
                    controller.resize(target: 0, lun: 0, blockCount: blockCount)
                } else if controller.detach(target: 1, lun: 1) != nil {
                    do {
                        try controller.attach(disks[1], target: 1, lun: 1)
                    } catch {
                        report.failures.append("re-attach: \(error)")
                    }
                }
            }
            check(server.pollBusChanges(), &report)
            // Complete a random share of the outstanding requests, out of order.
            while !outstanding.isEmpty, generator.chance(1, in: 2) || outstanding.count >= limit || iteration == iterations - 1 {
                let request = outstanding.remove(at: generator.below(outstanding.count))
                finish(request, &generator, &report)
            }
        }
        while let request = outstanding.popLast() { finish(request, &generator, &report) }
        if server.outstandingCount != 0 { report.failures.append("\(server.outstandingCount) requests never completed") }
        for (transaction, count) in expected where count != 0 {
            report.failures.append("transaction \(transaction): \(count > 0 ? "\(count) answers missing" : "\(-count) extra answers")")
        }
        return report
    }

    private static func expectedBytes(_ request: StorageIORequest) -> Int {
        switch request.operation {
        case .copyToGuest(let bytes): bytes.count
        case .read(_, let length, _), .write(_, let length, _): length
        case .readParameterList(let length): length
        case .flush, .unmap: 0
        }
    }
}
