import DeviceHost
import FuzzSupport
import VMBusHost
import VMBusProtocol

/// A packet the fuzzer's guest sends.
struct GuestPacket {
    var type: PacketType = .inband
    var flags: PacketFlags = []
    var transactionID: UInt64 = 0
    var payload: [UInt8]
}

/// What a guest says to one kind of VMBus device: the device under test, and packets that are
/// valid given what the device just sent (the fuzzer mutates a share of them). A device adds
/// its fuzz target by conforming a type to this and listing `VMBusDeviceFuzzTarget<Type>` in
/// `FuzzRegistry`.
protocol VMBusDeviceTraffic {
    static var name: String { get }
    static var summary: String { get }
    /// The device, built as the parent builds it, for a session seeded from `random`.
    static func makeDevice(_ random: inout FuzzRandom, context: FuzzDeviceContext) throws -> any VirtualServiceProvider
    /// The guest's next packet, given the host's packets since the last one.
    static func nextPacket(_ random: inout FuzzRandom, after hostPackets: [VSPFuzzHarness.HostPacket]) -> GuestPacket
    /// A promise of the device beyond "no trap, no corrupt ring", checked after every step.
    static func check(_ context: FuzzDeviceContext) -> String?
}

extension VMBusDeviceTraffic {
    static func check(_ context: FuzzDeviceContext) -> String? { nil }
}

/// Fuzzes a VMBus device with `Traffic`: valid packets, the same mutated, the host's own
/// packets mutated and sent back, noise of every packet type, ticks, and channel re-opens.
enum VMBusDeviceFuzzTarget<Traffic: VMBusDeviceTraffic>: FuzzTarget {
    static var name: String { Traffic.name }
    static var summary: String { Traffic.summary }
    static var sessionLength: Int { 5000 }

    static func runSession(seed: UInt64, cases: Int, progress: (Int) -> Void) -> [FuzzFinding] {
        var random = FuzzRandom(seed: seed)
        let harness: VSPFuzzHarness
        let context: FuzzDeviceContext
        do {
            context = try FuzzDeviceContext()
            harness = try VSPFuzzHarness(device: try Traffic.makeDevice(&random, context: context), context: context)
        } catch {
            return [FuzzFinding(caseIndex: 0, message: "cannot set up the device: \(error)")]
        }
        var findings: [FuzzFinding] = []
        var hostPackets: [VSPFuzzHarness.HostPacket] = []
        var corpus: [[UInt8]] = []
        harness.open()
        for index in 0..<cases {
            if harness.session == nil || random.chance(1, in: 500) {
                harness.open(relID: UInt32(random.int(1...64)))
            }
            switch random.int(0...19) {
            case 0...11:
                var packet = Traffic.nextPacket(&random, after: hostPackets)
                if random.chance(1, in: 3) { Mutator.mutate(&packet.payload, random: &random, corpus: corpus) }
                if random.chance(1, in: 20) { packet.flags = PacketFlags(rawValue: random.interesting(UInt16.self)) }
                if corpus.count < 32 { corpus.append(packet.payload) } else { corpus[random.int(0...31)] = packet.payload }
                harness.deliver(type: packet.type, flags: packet.flags, transactionID: packet.transactionID,
                                payload: packet.payload)
            case 12...14:
                // The host's own packet, mutated, sent back.
                if let echo = hostPackets.isEmpty ? nil : random.pick(hostPackets) {
                    harness.deliver(type: echo.descriptor.type, transactionID: echo.descriptor.transactionID,
                                    payload: Mutator.mutated(echo.payload, random: &random, corpus: corpus))
                }
            case 15, 16:
                let type = PacketType(rawValue: random.chance(1, in: 2) ? UInt16(random.int(0...13)) : random.interesting(UInt16.self))
                harness.deliver(type: type, transactionID: random.next(), payload: random.bytes(random.int(0...600)))
            default:
                harness.tick()
            }
            let drained = harness.drain()
            hostPackets = drained.packets.isEmpty ? hostPackets : drained.packets
            if let problem = drained.problem { findings.append(FuzzFinding(caseIndex: index, message: problem)) }
            if let problem = Traffic.check(context) { findings.append(FuzzFinding(caseIndex: index, message: problem)) }
            if index % 256 == 255 { progress(index + 1) }
            if findings.count > 20 { break }
        }
        harness.close()
        if harness.opens == 0 { findings.append(FuzzFinding(caseIndex: 0, message: "the device never opened a channel")) }
        if context.eventConnectionCount > 0 {
            findings.append(FuzzFinding(caseIndex: cases - 1,
                                        message: "\(context.eventConnectionCount) event connections left registered after close"))
        }
        progress(cases)
        return findings
    }
}
