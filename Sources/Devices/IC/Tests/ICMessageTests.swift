import ICProtocol
import Testing
import VMBusProtocol
import TestSupport

@Suite("IC message framing (Docs/hyperv-interface.md §10.1-§10.2)")
struct ICMessageTests {
    @Test("Pipe header, icmsg_hdr and body sit at their byte-exact offsets")
    func layout() throws {
        let message = ICMessage(
            pipeHeader: PipeHeader(messageSize: 0x0102_0304),
            header: ICMessageHeader(
                frameworkVersion: ICVersion(0x1112, 0x1314), messageType: .timeSync,
                messageVersion: ICVersion(0x2122, 0x2324), messageSize: 0x3132, status: ICStatus(rawValue: 0x4142_4344),
                transactionID: 0x51, flags: [.transaction, .request]),
            body: [0xAA, 0xBB])
        let bytes = message.bytes
        #expect(ICMessage.headerOffset == 8)
        #expect(ICMessage.bodyOffset == 28)
        #expect(ICMessageHeader.size == 20)
        #expect(bytes.count == 30)
        #expect(le(bytes, 0, as: UInt32.self) == 1)
        #expect(le(bytes, 4, as: UInt32.self) == 0x0102_0304)
        #expect(le(bytes, 8, as: UInt16.self) == 0x1112)
        #expect(le(bytes, 10, as: UInt16.self) == 0x1314)
        #expect(le(bytes, 12, as: UInt16.self) == 4)
        #expect(le(bytes, 14, as: UInt16.self) == 0x2122)
        #expect(le(bytes, 16, as: UInt16.self) == 0x2324)
        #expect(le(bytes, 18, as: UInt16.self) == 0x3132)
        #expect(le(bytes, 20, as: UInt32.self) == 0x4142_4344)
        #expect(bytes[24] == 0x51)
        #expect(bytes[25] == 3)
        #expect(bytes[26] == 0 && bytes[27] == 0)
        #expect(Array(bytes[28...]) == [0xAA, 0xBB])
        #expect(try ICMessage(parsing: bytes) == message)
    }

    @Test("Host requests carry TRANSACTION|REQUEST, status 0 and consistent sizes")
    func requestDefaults() {
        let request = ICMessage.request(
            type: .heartbeat, frameworkVersion: ICVersion(3, 0), messageVersion: ICVersion(3, 0),
            body: HeartbeatBody(sequenceNumber: 5).bytes)
        #expect(request.header.flags == [.transaction, .request])
        #expect(request.header.flags.rawValue == 3)
        #expect(request.header.status == .success)
        #expect(request.header.messageSize == 40)
        #expect(request.pipeHeader.flags == 1)
        #expect(request.pipeHeader.messageSize == 60)
        #expect(request.bytes.count == 68)
    }

    @Test("Flags and status constants match Hyper-V")
    func constants() {
        #expect(ICFlags.transaction.rawValue == 1)
        #expect(ICFlags.request.rawValue == 2)
        #expect(ICFlags.response.rawValue == 4)
        #expect(ICStatus.success.rawValue == 0)
        #expect(ICStatus.failure.rawValue == 0x8000_4005)
        let types: [ICMessageType] = [.negotiate, .heartbeat, .kvpExchange, .shutdown, .timeSync, .vss, .fcopy]
        #expect(types.map(\.rawValue) == [0, 1, 2, 3, 4, 5, 7])
    }

    @Test("A response keeps pipe header, transaction ID and length, and sets TRANSACTION|RESPONSE")
    func responseInPlace() throws {
        let request = ICMessage.request(
            type: .shutdown, frameworkVersion: ICVersion(3, 0), messageVersion: ICVersion(3, 2), transactionID: 9,
            body: ShutdownBody(flags: .powerOff).bytes)
        let response = try request.response(status: .success)
        #expect(response.header.flags.rawValue == 5)
        #expect(response.header.transactionID == 9)
        #expect(response.pipeHeader == request.pipeHeader)
        #expect(response.bytes.count == request.bytes.count)
        #expect(response.body == request.body)

        var raw = request.bytes
        try ICMessage.makeResponse(inPlace: &raw, status: .failure)
        #expect(raw.count == request.bytes.count)
        #expect(raw[25] == 5)
        #expect(le(raw, 20, as: UInt32.self) == 0x8000_4005)

        #expect(throws: ICError.bodyTooLarge(size: 3000, capacity: 2060)) {
            try request.response(status: .success, replacingBodyWith: [UInt8](repeating: 0, count: 3000))
        }
    }

    @Test("Malformed payloads are rejected")
    func malformed() {
        let good = ICMessage.request(
            type: .heartbeat, frameworkVersion: ICVersion(3, 0), messageVersion: ICVersion(3, 0),
            body: HeartbeatBody(sequenceNumber: 1).bytes
        ).bytes
        for length in 0..<28 {
            #expect(throws: ICError.self) { try ICMessage(parsing: Array(good.prefix(length))) }
        }
        var badPipe = good
        badPipe[0] = 2
        #expect(throws: ICError.invalidPipeHeader(flags: 2)) { try ICMessage(parsing: badPipe) }
        var short = [UInt8](repeating: 0, count: 27)
        #expect(throws: ICError.truncated(needed: 28, available: 27)) {
            try ICMessage.makeResponse(inPlace: &short, status: .success)
        }
        #expect(throws: ICError.self) { try ICMessageHeader(parsing: good, at: -1) }
        #expect(throws: ICError.self) { try ICMessageHeader(parsing: good, at: good.count - 19) }
    }
}

@Suite("IC version negotiation (Docs/hyperv-interface.md §10.3)")
struct ICNegotiationTests {
    @Test("The host request lists framework then message versions after counts and reserved")
    func requestLayout() throws {
        let request = ICNegotiation.request(
            frameworkVersions: [ICVersion(3, 0), ICVersion(1, 0)],
            messageVersions: [ICVersion(4, 0), ICVersion(3, 0), ICVersion(1, 0)])
        #expect(request.header.messageType == .negotiate)
        let body = request.body
        #expect(body.count == 8 + 5 * 4)
        #expect(le(body, 0, as: UInt16.self) == 2)
        #expect(le(body, 2, as: UInt16.self) == 3)
        #expect(le(body, 4, as: UInt32.self) == 0)
        #expect(le(body, 8, as: UInt16.self) == 3 && le(body, 10, as: UInt16.self) == 0)
        #expect(le(body, 16, as: UInt16.self) == 4 && le(body, 18, as: UInt16.self) == 0)
        #expect(le(body, 24, as: UInt16.self) == 1 && le(body, 26, as: UInt16.self) == 0)
        let parsed = try ICNegotiateBody(parsing: body)
        #expect(parsed.frameworkVersions == [ICVersion(3, 0), ICVersion(1, 0)])
        #expect(parsed.messageVersions == [ICVersion(4, 0), ICVersion(3, 0), ICVersion(1, 0)])
    }

    @Test("Selection follows the guest's preference order, not the host's")
    func selectionOrder() {
        let offered = [ICVersion(1, 0), ICVersion(3, 0), ICVersion(3, 1), ICVersion(3, 2)]
        #expect(ICNegotiation.select(from: offered, preferring: ICService.shutdown.messageVersions) == ICVersion(3, 2))
        #expect(ICNegotiation.select(from: offered, preferring: ICService.frameworkVersions) == ICVersion(3, 0))
        #expect(
            ICNegotiation.select(from: [ICVersion(1, 0)], preferring: ICService.frameworkVersions) == ICVersion(1, 0))
        #expect(ICNegotiation.select(from: [ICVersion(2, 0)], preferring: ICService.heartbeat.messageVersions) == nil)
        #expect(ICNegotiation.select(from: [], preferring: ICService.heartbeat.messageVersions) == nil)
    }

    @Test("Service preference lists match Linux 6.1")
    func preferenceLists() {
        #expect(ICService.frameworkVersions == [ICVersion(3, 0), ICVersion(1, 0)])
        #expect(ICService.heartbeat.messageVersions == [ICVersion(3, 0), ICVersion(1, 0)])
        #expect(
            ICService.shutdown.messageVersions == [ICVersion(3, 2), ICVersion(3, 1), ICVersion(3, 0), ICVersion(1, 0)])
        #expect(ICService.timeSync.messageVersions == [ICVersion(4, 0), ICVersion(3, 0), ICVersion(1, 0)])
        #expect(ICService.timeSync.classID == .timeSync)
        #expect(ICService.kvp.maximumPacketSize == 16384)
    }

    @Test("The guest answers in place: counts 1/1, framework in slot 0, message in slot 1, icmsgsize 0x10")
    func guestResponseInPlace() throws {
        let request = ICNegotiation.request(
            frameworkVersions: [ICVersion(1, 0), ICVersion(3, 0)],
            messageVersions: [ICVersion(1, 0), ICVersion(3, 0), ICVersion(4, 0)], transactionID: 7)
        var payload = request.bytes
        let outcome = try ICNegotiation.respond(inPlace: &payload, messageVersions: ICService.timeSync.messageVersions)
        #expect(outcome == .agreed(framework: ICVersion(3, 0), message: ICVersion(4, 0)))
        #expect(payload.count == request.bytes.count)
        #expect(payload[25] == 5, "TRANSACTION|RESPONSE")
        #expect(payload[24] == 7, "transaction ID echoed")
        #expect(le(payload, 18, as: UInt16.self) == 0x10)
        #expect(le(payload, 20, as: UInt32.self) == 0)
        #expect(le(payload, 28, as: UInt16.self) == 1 && le(payload, 30, as: UInt16.self) == 1)
        #expect(le(payload, 36, as: UInt16.self) == 3 && le(payload, 38, as: UInt16.self) == 0)
        #expect(le(payload, 40, as: UInt16.self) == 4 && le(payload, 42, as: UInt16.self) == 0)

        // The host reads the same outcome back.
        #expect(try ICNegotiation.outcome(of: ICMessage(parsing: payload)) == outcome)
    }

    @Test("No common version gives counts 0/0, which the host reads as no match")
    func noMatch() throws {
        var payload = ICNegotiation.request(messageVersions: [ICVersion(2, 0)]).bytes
        let outcome = try ICNegotiation.respond(inPlace: &payload, messageVersions: ICService.heartbeat.messageVersions)
        #expect(outcome == .noCommonVersion)
        #expect(le(payload, 28, as: UInt16.self) == 0 && le(payload, 30, as: UInt16.self) == 0)
        #expect(le(payload, 20, as: UInt32.self) == 0x8000_4005)
        #expect(try ICNegotiation.outcome(of: ICMessage(parsing: payload)) == .noCommonVersion)

        // Nothing offered at all: still 0/0, and no version slot is written.
        var empty = ICNegotiation.request(frameworkVersions: [], messageVersions: []).bytes
        #expect(empty.count == 36)
        #expect(
            try ICNegotiation.respond(inPlace: &empty, messageVersions: ICService.heartbeat.messageVersions)
                == .noCommonVersion)
        #expect(empty.count == 36)
    }

    @Test("The host rejects malformed negotiate responses")
    func hostRejects() throws {
        let request = ICNegotiation.request(messageVersions: [ICVersion(3, 0)])
        #expect(throws: ICError.notAResponse([.transaction, .request])) { try ICNegotiation.outcome(of: request) }

        var twoOne = try request.response(status: .success)
        twoOne.body =
            ICNegotiateBody(frameworkVersions: [ICVersion(3, 0), ICVersion(1, 0)], messageVersions: [ICVersion(3, 0)])
            .bytes
        #expect(throws: ICError.invalidVersionCounts(framework: 2, message: 1)) {
            try ICNegotiation.outcome(of: twoOne)
        }

        var overrun = try request.response(status: .success)
        overrun.body = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]
        #expect(throws: ICError.self) { try ICNegotiation.outcome(of: overrun) }

        var wrongType = try request.response(status: .success)
        wrongType.header.messageType = .heartbeat
        #expect(throws: ICError.unexpectedMessageType(expected: .negotiate, found: .heartbeat)) {
            try ICNegotiation.outcome(of: wrongType)
        }
    }

    @Test("The guest rejects a negotiate body whose counts overrun the packet")
    func guestRejectsOverrun() {
        var payload = ICNegotiation.request(messageVersions: [ICVersion(3, 0)]).bytes
        payload[30] = 9  // icmsg_vercnt = 9, but only one message version is present
        #expect(throws: ICError.self) {
            try ICNegotiation.respond(inPlace: &payload, messageVersions: ICService.heartbeat.messageVersions)
        }
        var heartbeat = ICMessage.request(
            type: .heartbeat, frameworkVersion: ICVersion(3, 0), messageVersion: ICVersion(3, 0),
            body: HeartbeatBody(sequenceNumber: 1).bytes
        ).bytes
        #expect(throws: ICError.unexpectedMessageType(expected: .negotiate, found: .heartbeat)) {
            try ICNegotiation.respond(inPlace: &heartbeat, messageVersions: ICService.heartbeat.messageVersions)
        }
    }
}
