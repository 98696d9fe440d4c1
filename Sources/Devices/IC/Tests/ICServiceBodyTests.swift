import ICProtocol
import Testing
import VMBusProtocol
import TestSupport

@Suite("Heartbeat, shutdown and time-sync bodies (Docs/hyperv-interface.md §10.4-§10.6)")
struct ICServiceBodyTests {
    @Test("Heartbeat body is 40 bytes and the guest answers seq_num + 1")
    func heartbeat() throws {
        let body = HeartbeatBody(sequenceNumber: 41)
        #expect(body.bytes.count == 40)
        #expect(le(body.bytes, 0, as: UInt64.self) == 41)
        #expect(body.bytes[8...].allSatisfy { $0 == 0 })
        #expect(body.response.sequenceNumber == 42)
        #expect(HeartbeatBody(sequenceNumber: .max).response.sequenceNumber == 0)

        let request = ICMessage.request(
            type: .heartbeat, frameworkVersion: ICVersion(3, 0), messageVersion: ICVersion(3, 0), transactionID: 2,
            body: body.bytes)
        var payload = request.bytes
        #expect(try HeartbeatBody.respond(inPlace: &payload) == body)
        let response = try ICMessage(parsing: payload)
        #expect(try HeartbeatBody(parsing: response.body).sequenceNumber == 42)
        #expect(response.header.flags == [.transaction, .response])
        #expect(response.header.transactionID == 2)
        #expect(payload.count == request.bytes.count)
    }

    @Test("Heartbeat needs at least the 8-byte sequence number")
    func heartbeatTruncated() {
        #expect(throws: ICError.truncated(needed: 8, available: 7)) {
            try HeartbeatBody(parsing: [0, 0, 0, 0, 0, 0, 0])
        }
        var payload = ICMessage.request(
            type: .heartbeat, frameworkVersion: ICVersion(3, 0), messageVersion: ICVersion(3, 0), body: [1, 2, 3]
        ).bytes
        #expect(throws: ICError.self) { try HeartbeatBody.respond(inPlace: &payload) }
    }

    @Test("Shutdown body is always the full 2060 bytes")
    func shutdownSize() throws {
        let body = ShutdownBody(reasonCode: 0x11, timeoutSeconds: 30, flags: .reboot, displayMessage: Array("bye".utf8))
        let bytes = body.bytes
        #expect(ShutdownBody.size == 2060)
        #expect(bytes.count == 2060)
        #expect(le(bytes, 0, as: UInt32.self) == 0x11)
        #expect(le(bytes, 4, as: UInt32.self) == 30)
        #expect(le(bytes, 8, as: UInt32.self) == 2)
        #expect(Array(bytes[12..<16]) == [0x62, 0x79, 0x65, 0])
        let parsed = try ShutdownBody(parsing: bytes)
        #expect(parsed.flags.action == .reboot)
        #expect(parsed.displayMessage.count == 2048)
        #expect(Array(parsed.displayMessage.prefix(3)) == Array("bye".utf8))

        // The whole request, with its 16-byte descriptor, stays under the 4 KiB inbound limit.
        let request = ICMessage.request(
            type: .shutdown, frameworkVersion: ICVersion(3, 0), messageVersion: ICVersion(3, 2), body: bytes)
        #expect(request.bytes.count == 28 + 2060)
        #expect(16 + request.bytes.count <= ICService.shutdown.maximumPacketSize)
        #expect(ShutdownBody(flags: .powerOff, displayMessage: [UInt8](repeating: 1, count: 5000)).bytes.count == 2060)
    }

    @Test("A shutdown body shorter than 2060 bytes is rejected")
    func shutdownTruncated() {
        #expect(throws: ICError.truncated(needed: 2060, available: 2059)) {
            try ShutdownBody(parsing: [UInt8](repeating: 0, count: 2059))
        }
    }

    @Test(
        "Shutdown flags map as Linux does: 0/1 power off, 2/3 reboot, 4/5 hibernate", arguments: 0..<8 as Range<UInt32>)
    func shutdownActions(raw: UInt32) {
        let expected: [ShutdownAction?] = [.powerOff, .powerOff, .reboot, .reboot, .hibernate, .hibernate, nil, nil]
        #expect(ShutdownFlags(rawValue: raw).action == expected[Int(raw)])
    }

    @Test("FILETIME is Unix time in 100 ns plus 116444736000000000")
    func fileTime() {
        #expect(FileTime(unix100Nanoseconds: 0)?.rawValue == 116_444_736_000_000_000)
        #expect(FileTime.unixEpoch.rawValue == 116_444_736_000_000_000)
        // 2000-01-01T00:00:00Z = 946684800 s.
        #expect(FileTime(unixSeconds: 946_684_800)?.rawValue == 125_911_584_000_000_000)
        #expect(FileTime(unixSeconds: 946_684_800, nanoseconds: 1_234_567_899)?.rawValue == 125_911_584_012_345_678)
        #expect(FileTime(rawValue: 125_911_584_000_000_000).unix100Nanoseconds == 9_466_848_000_000_000)
        // 1601-01-01 is FILETIME 0; anything earlier is unrepresentable.
        #expect(FileTime(unix100Nanoseconds: -116_444_736_000_000_000)?.rawValue == 0)
        #expect(FileTime(unix100Nanoseconds: -116_444_736_000_000_001) == nil)
        #expect(FileTime(rawValue: 0).unix100Nanoseconds == -116_444_736_000_000_000)
        #expect(FileTime(unixSeconds: .max) == nil)
        #expect(FileTime(unix100Nanoseconds: .max) != nil)
        #expect(FileTime(unix100Nanoseconds: .min) == nil)
        #expect(FileTime(rawValue: .max).unix100Nanoseconds == nil)
    }

    @Test("Time-sync 4.0 body is 22 bytes: parenttime @0, vmreferencetime @8, flags @16, leap @17, stratum @18")
    func timeSyncReference() throws {
        let body = TimeSyncReferenceBody(
            parentTime: FileTime(rawValue: 0x0102_0304_0506_0708), vmReferenceTime: 0x1112_1314_1516_1718,
            flags: .sync, leapFlags: -1, stratum: 2)
        let bytes = body.bytes
        #expect(bytes.count == 22)
        #expect(le(bytes, 0, as: UInt64.self) == 0x0102_0304_0506_0708)
        #expect(le(bytes, 8, as: UInt64.self) == 0x1112_1314_1516_1718)
        #expect(bytes[16] == 1)
        #expect(bytes[17] == 0xFF)
        #expect(bytes[18] == 2)
        #expect(Array(bytes[19..<22]) == [0, 0, 0])
        #expect(try TimeSyncReferenceBody(parsing: bytes) == body)
        #expect(throws: ICError.self) { try TimeSyncReferenceBody(parsing: Array(bytes.prefix(21))) }
    }

    @Test("Time-sync pre-4.0 body is 25 bytes with flags @24")
    func timeSyncLegacy() throws {
        let body = TimeSyncBody(
            parentTime: FileTime(rawValue: 1), childTime: FileTime(rawValue: 2), roundTripTime: 3, flags: .sample)
        let bytes = body.bytes
        #expect(bytes.count == 25)
        #expect(le(bytes, 8, as: UInt64.self) == 2)
        #expect(le(bytes, 16, as: UInt64.self) == 3)
        #expect(bytes[24] == 2)
        #expect(try TimeSyncBody(parsing: bytes) == body)
        #expect(throws: ICError.self) { try TimeSyncBody(parsing: Array(bytes.prefix(24))) }
        #expect(TimeSyncFlags.sync.rawValue == 1 && TimeSyncFlags.sample.rawValue == 2)
    }
}

@Suite("IC parsers under hostile input")
struct ICHostileTests {
    @Test("Random payloads never trap any IC parser or in-place responder")
    func randomPayloadsNeverTrap() {
        var generator = SeededGenerator(seed: 0x1C_0BAD)
        var negotiated = 0
        for _ in 0..<20_000 {
            var payload = generator.bytes(Int.random(in: 0...120, using: &generator))
            // Make many of them look like real IC requests so the body parsers are reached.
            if payload.count >= 28, Bool.random(using: &generator) {
                payload[0] = 1
                payload[1] = 0
                payload[2] = 0
                payload[3] = 0
                payload[12] = UInt8.random(in: 0...4, using: &generator)
                payload[13] = 0
                if Bool.random(using: &generator), payload.count >= 32 {
                    payload[29] = 0
                    payload[31] = 0
                    payload[28] = UInt8.random(in: 0...4, using: &generator)
                    payload[30] = UInt8.random(in: 0...4, using: &generator)
                }
            }
            let length = payload.count
            if let message = try? ICMessage(parsing: payload) {
                _ = try? ICNegotiateBody(parsing: message.body)
                _ = try? ICNegotiation.outcome(of: message)
                _ = try? HeartbeatBody(parsing: message.body)
                _ = try? ShutdownBody(parsing: message.body)
                _ = try? TimeSyncReferenceBody(parsing: message.body)
                _ = try? TimeSyncBody(parsing: message.body)
                _ = try? message.response(status: .success, replacingBodyWith: generator.bytes(8))
            }
            var negotiate = payload
            if (try? ICNegotiation.respond(inPlace: &negotiate, messageVersions: ICService.shutdown.messageVersions))
                != nil
            {
                negotiated += 1
            }
            #expect(negotiate.count == length)
            var heartbeat = payload
            _ = try? HeartbeatBody.respond(inPlace: &heartbeat)
            #expect(heartbeat.count == length)
            var any = payload
            _ = try? ICMessage.makeResponse(inPlace: &any, status: .failure)
        }
        #expect(negotiated > 0)
    }
}
