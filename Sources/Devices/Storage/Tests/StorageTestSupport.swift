import StorageProtocol
import StorageVSP
import TestSupport
import VMBusProtocol

/// The disk most tests use: 1 MiB of 512-byte blocks on 4 KiB physical blocks, with discard.
func testDisk(serial: String = "SN-0001", blockSize: UInt32 = 512, blockCount: UInt64 = 2048, readOnly: Bool = false,
              writeCache: Bool = true, discard: Bool = true) -> SCSIDiskConfiguration {
    SCSIDiskConfiguration(serialNumber: serial, blockSize: blockSize, blockCount: blockCount, readOnly: readOnly,
                          writeCacheEnabled: writeCache, discardSupported: discard)
}

/// A disk's answer to a CDB.
func run(_ disk: inout SCSIDisk, _ cdb: [UInt8]) -> SCSIOutcome {
    do {
        return disk.execute(try SCSICommand(parsing: cdb))
    } catch {
        return .checkCondition(SCSIDisk.sense(for: error))
    }
}

/// The data of a `.dataIn` outcome, or `nil`.
func dataIn(_ outcome: SCSIOutcome) -> [UInt8]? {
    if case .dataIn(let bytes) = outcome { return bytes }
    return nil
}

/// The sense of a `.checkCondition` outcome, or `nil`.
func sense(_ outcome: SCSIOutcome) -> SenseData? {
    if case .checkCondition(let sense) = outcome { return sense }
    return nil
}

/// ASCII bytes.
func ascii(_ text: String) -> [UInt8] { Array(text.utf8) }

/// An in-band request packet.
func inband(_ packet: VStorPacket, transactionID: UInt64 = StorageChannelConstants.initializationTransactionID,
            flags: PacketFlags = .completionRequested) -> StorageIncomingPacket {
    StorageIncomingPacket(type: .inband, flags: flags, transactionID: transactionID, payload: packet.bytes)
}

/// An EXECUTE_SRB packet as Linux builds it: in-band without data, GPA-direct with one range
/// (consecutive pages from `firstPage`) when there is.
func srb(_ cdb: [UInt8], path: UInt8 = 0, target: UInt8 = 0, lun: UInt8 = 0, direction: SRBDataDirection? = nil,
         length: Int = 0, transactionID: UInt64 = 42, byteOffset: UInt32 = 0, firstPage: UInt64 = 0x100,
         version: StorageProtocolVersion = .win10) -> StorageIncomingPacket {
    let direction = direction ?? (length == 0 ? .noData : .read)
    let block = SCSIRequestBlock(pathID: path, targetID: target, lun: lun, cdb: cdb, dataDirection: direction,
                                 dataTransferLength: UInt32(length))
    let payload = block.packet(version: version).bytes
    guard length > 0 else {
        return StorageIncomingPacket(type: .inband, flags: .completionRequested, transactionID: transactionID, payload: payload)
    }
    let pages = VMBusConstants.pageCount(byteOffset: byteOffset, byteCount: UInt32(length))
    let range = GPARange(byteCount: UInt32(length), byteOffset: byteOffset, pfns: (0..<UInt64(pages)).map { firstPage + $0 })
    return StorageIncomingPacket(type: .gpaDirect, flags: .completionRequested, transactionID: transactionID,
                                 payload: payload, buffer: .range(range))
}

/// A server taken through Linux's initialization at `version`.
func readyServer(_ controller: StorageController, version: StorageProtocolVersion = .win10,
                 configuration: StorageServer.Configuration = .init(maximumSubChannels: 3)) -> StorageServer {
    var server = StorageServer(controller: controller, configuration: configuration)
    _ = server.handle(inband(VStorPacket(operation: .beginInitialization, flags: .requestCompletion)))
    _ = server.handle(inband(StorageVersionRequest(version: version).packet))
    _ = server.handle(inband(VStorPacket(operation: .queryProperties, flags: .requestCompletion)))
    _ = server.handle(inband(VStorPacket(operation: .endInitialization, flags: .requestCompletion)))
    return server
}

/// The packets among `actions`.
func sent(_ actions: [StorageAction]) -> [StorageOutgoingPacket] {
    actions.compactMap { if case .send(let packet) = $0 { packet } else { nil } }
}

/// The requests among `actions`.
func requests(_ actions: [StorageAction]) -> [StorageIORequest] {
    actions.compactMap { if case .execute(let request) = $0 { request } else { nil } }
}

/// What the guest sees of an SRB's completion.
struct SRBCompletion {
    var packet: StorageOutgoingPacket
    var vstor: VStorPacket
    var block: SCSIRequestBlock
    /// Data the driver copied into the guest buffer.
    var data: [UInt8] = []

    var sense: SenseData? { try? SenseData(parsing: block.sense) }
}

/// Runs one SRB through `server`, acting as the driver for data-in copies (and, if given, for
/// other requests), and returns the completion the guest would read.
func execute(_ server: inout StorageServer, _ packet: StorageIncomingPacket,
             driver: (StorageIORequest) -> StorageIOResult = { _ in .completed(byteCount: 0) }) -> SRBCompletion? {
    var actions = server.handle(packet)
    var data: [UInt8] = []
    while let request = requests(actions).first {
        actions = actions.filter { if case .execute = $0 { false } else { true } }
        switch request.operation {
        case .copyToGuest(let bytes):
            data = bytes
            actions += server.complete(request.token, result: .completed(byteCount: bytes.count))
        default:
            actions += server.complete(request.token, result: driver(request))
        }
    }
    guard let reply = sent(actions).first, reply.payload.count == VStorPacket.size,
          let vstor = try? VStorPacket(parsing: reply.payload),
          let block = try? SCSIRequestBlock(parsing: vstor, version: server.version ?? .win8)
    else { return nil }
    return SRBCompletion(packet: reply, vstor: vstor, block: block, data: data)
}
