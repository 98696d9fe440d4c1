import BenchProtocol
import BenchVSP
import FuzzSupport
import ICProtocol
import ICVSP
import VMBusHost
import VMBusProtocol

/// A guest of the integration services (heartbeat, shutdown, time sync): it answers the host's
/// requests as `hv_utils` does — negotiation with its versions, heartbeats with the sequence
/// plus one, anything else acknowledged — and sometimes unprompted or out of turn.
enum IntegrationServiceTraffic: VMBusDeviceTraffic {
    static let name = "ic"
    static let summary = "the integration services' VSP (heartbeat, shutdown, time sync) against a guest answering its requests"

    static func makeDevice(_ random: inout FuzzRandom, context: FuzzDeviceContext) throws -> any VirtualServiceProvider {
        IntegrationServiceVSP(service: random.pick([ICService.heartbeat, .shutdown, .timeSync]), host: context)
    }

    static func nextPacket(_ random: inout FuzzRandom, after hostPackets: [VSPFuzzHarness.HostPacket]) -> GuestPacket {
        guard let request = hostPackets.last, !random.chance(1, in: 10) else {
            let header = ICMessageHeader(frameworkVersion: ICVersion(3, 0),
                                         messageType: ICMessageType(rawValue: UInt16(random.int(0...7))),
                                         messageVersion: ICVersion(UInt16(random.int(0...5)), 0),
                                         messageSize: UInt16(random.int(0...64)),
                                         transactionID: UInt8(truncatingIfNeeded: random.next()),
                                         flags: ICFlags(rawValue: UInt8(truncatingIfNeeded: random.next())))
            let message = ICMessage(pipeHeader: PipeHeader(flags: 1, messageSize: 0), header: header,
                                    body: random.bytes(random.int(0...48)))
            return GuestPacket(transactionID: random.next(), payload: message.bytes)
        }
        var payload = request.payload
        if let message = try? ICMessage(parsing: payload) {
            switch message.header.messageType {
            case .negotiate:
                let versions = random.chance(1, in: 4) ? [ICVersion(UInt16(random.int(0...5)), UInt16(random.int(0...3)))]
                                                       : [ICVersion(3, 0), ICVersion(4, 0), ICVersion(1, 0)]
                _ = try? ICNegotiation.respond(inPlace: &payload, messageVersions: versions)
            case .heartbeat:
                _ = try? HeartbeatBody.respond(inPlace: &payload)
            default:
                _ = try? ICMessage.makeResponse(inPlace: &payload, status: random.chance(1, in: 4) ? .failure : .success)
            }
        }
        return GuestPacket(transactionID: request.descriptor.transactionID, payload: payload)
    }
}

/// A guest of the bench device: phases of every mode with plausible and boundary parameters,
/// data, pings and phase ends, in order and out of it.
enum BenchTraffic: VMBusDeviceTraffic {
    static let name = "bench"
    static let summary = "the bench VSP against a guest running phases with random parameters"

    static func makeDevice(_ random: inout FuzzRandom, context: FuzzDeviceContext) throws -> any VirtualServiceProvider {
        BenchVSP(host: context)
    }

    static func nextPacket(_ random: inout FuzzRandom, after hostPackets: [VSPFuzzHarness.HostPacket]) -> GuestPacket {
        let phase = UInt32(random.int(0...3))
        var payload = [UInt8](repeating: 0, count: BenchHeader.size)
        switch random.int(0...9) {
        case 0, 1:
            BenchHeader(kind: .phaseStart, phase: phase).store(into: &payload)
            let size = random.chance(1, in: 4) ? random.interesting(UInt32.self)
                                               : UInt32(random.pick([24, 32, 64, 256, 4096])) + UInt32(8 * random.int(0...64))
            payload += BenchPhase(mode: BenchMode(rawValue: UInt32(random.int(0...6))), messageSize: size,
                                  count: UInt32(random.int(0...50)), flags: UInt32(random.int(0...1))).bytes
        case 2...5:
            BenchHeader(kind: .data, phase: phase, sequence: UInt32(random.int(0...100))).store(into: &payload)
            payload += random.bytes(random.int(8...600))
        case 6, 7:
            BenchHeader(kind: .ping, phase: phase, sequence: UInt32(random.int(0...100))).store(into: &payload)
            payload += random.bytes(random.int(8...64))
        default:
            BenchHeader(kind: .phaseEnd, phase: phase).store(into: &payload)
            payload += BenchPhaseEnd(messages: UInt64(random.int(0...100)), checksum: random.next(),
                                     guestNanoseconds: random.next() >> 20, p50Nanoseconds: UInt64(random.int(0...1000)),
                                     p99Nanoseconds: UInt64(random.int(0...5000))).bytes
        }
        return GuestPacket(transactionID: random.next(), payload: payload)
    }

    /// The bench names its facts after the sizes the guest picks: their number must stay bounded.
    static func check(_ context: FuzzDeviceContext) -> String? {
        let limit = BenchVSP.factLimit
        return context.distinctFactKeys > limit ? "the bench reported \(context.distinctFactKeys) distinct facts (limit \(limit))" : nil
    }
}
