import FuzzSupport
import HyperV
import VMBusProtocol
import VMBusServer

/// The VMBus control plane as a guest drives it: a stateful sequence of channel messages
/// (contact at every version, offers, GPADLs split over bodies as Linux splits them, opens,
/// modifies, closes, teardowns, releases, unloads), each generated valid from what the session
/// has seen and then, often, mutated; mixed with device answers (open accepted or refused,
/// rescinds, new offers) and pure noise. Each step checks the server's promises: every message
/// it posts fits a SynIC message and goes to a real processor, every ring it asks to open lies in
/// guest RAM with a host→guest part, and nothing it does traps.
enum VMBusServerFuzzTarget: FuzzTarget {
    static let name = "vmbus-server"
    static let summary = "the VMBus server (VMBusServer) as a stateful sequence of guest messages and device answers"
    static let sessionLength = 400

    static let memorySize: UInt64 = 64 << 20
    static let processorCount: UInt32 = 2

    static func runSession(seed: UInt64, cases: Int, progress: (Int) -> Void) -> [FuzzFinding] {
        var random = FuzzRandom(seed: seed)
        var server = VMBusServer(configuration: .init(memorySize: memorySize, processorCount: processorCount,
                                                      maximumGPADLPages: 1024, maximumGPADLs: 64))
        var relIDs: [UInt32] = []
        var gpadls: [UInt32] = []
        var corpus: [[UInt8]] = []
        var findings: [FuzzFinding] = []
        for _ in 0..<random.int(1...4) {
            if let (relID, _) = server.addOffer(offer(&random)) { relIDs.append(relID) }
        }
        for index in 0..<cases {
            let actions: [ServerAction]
            switch random.int(0...19) {
            case 0...13:
                var payload = guestMessage(&random, relIDs: relIDs, gpadls: &gpadls).bytes
                if random.chance(1, in: 3) { Mutator.mutate(&payload, random: &random, corpus: corpus) }
                if corpus.count < 64 { corpus.append(payload) } else { corpus[random.int(0...63)] = payload }
                let connection = random.chance(1, in: 8) ? random.next() : random.pick([UInt64(1), 4])
                actions = server.handle(payload, connectionID: ConnectionID(UInt32(truncatingIfNeeded: connection)),
                                        from: UInt32(random.int(0...Int(processorCount))))
            case 14...16:
                let relID = relIDs.isEmpty || random.chance(1, in: 8) ? UInt32(truncatingIfNeeded: random.next())
                                                                         : random.pick(relIDs)
                actions = server.completeOpen(channel: relID, accepted: random.chance(3, in: 4))
            case 17:
                let relID = relIDs.isEmpty ? UInt32(truncatingIfNeeded: random.next()) : random.pick(relIDs)
                // A broken channel (closed at once), a device going away (served until the guest
                // closes it), or the deadline of such a withdrawal.
                switch random.int(0...2) {
                case 0: actions = server.rescind(channel: relID)
                case 1: actions = server.rescind(channel: relID, untilGuestCloses: true)
                default: actions = server.finishWithdrawal(channel: relID)
                }
            case 18:
                if let (relID, offered) = server.addOffer(offer(&random)) {
                    relIDs.append(relID)
                    actions = offered
                } else {
                    actions = []
                }
            default:
                actions = server.handle(random.bytes(random.int(0...260)), connectionID: ConnectionID(1), from: 0)
            }
            if let problem = check(actions) { findings.append(FuzzFinding(caseIndex: index, message: problem)) }
            if index % 256 == 255 { progress(index + 1) }
        }
        progress(cases)
        return findings
    }

    /// The first broken promise in `actions`, if any.
    static func check(_ actions: [ServerAction]) -> String? {
        for action in actions {
            switch action {
            case .post(let vp, _, let message):
                if vp >= processorCount { return "message posted to processor \(vp) of \(processorCount)" }
                if message.bytes.count > SynIC.maximumMessagePayload {
                    return "posted a \(message.bytes.count)-byte message: \(message.type)"
                }
            case .open(let request):
                if request.targetVP >= processorCount { return "channel \(request.channel) opened on processor \(request.targetVP)" }
                let pages = request.ring.pageNumbers
                if request.downstreamPageOffset <= 0 || request.downstreamPageOffset >= pages.count {
                    return "ring split at page \(request.downstreamPageOffset) of \(pages.count)"
                }
                if let outside = pages.first(where: { $0 >= memorySize / 4096 }) {
                    return "ring page \(outside) outside guest RAM"
                }
            default:
                break
            }
        }
        return nil
    }

    static func offer(_ random: inout FuzzRandom) -> ChannelOffer {
        let instance = GUID(wireBytes: random.bytes(16)) ?? GUID(0, 0, 0, 0)
        let type = GUID(wireBytes: random.bytes(16)) ?? GUID(0, 0, 0, 0)
        return ChannelOffer(interfaceType: type, interfaceInstance: instance, name: "fuzz",
                            subChannelIndex: random.chance(1, in: 4) ? UInt16(random.int(1...3)) : 0)
    }

    /// A message a guest could send now: valid fields drawn from what the session knows, or
    /// boundary values.
    static func guestMessage(_ random: inout FuzzRandom, relIDs: [UInt32], gpadls: inout [UInt32]) -> ChannelMessage {
        func relID() -> UInt32 {
            relIDs.isEmpty || random.chance(1, in: 10) ? random.interesting(UInt32.self) : random.pick(relIDs)
        }
        func gpadl() -> UInt32 {
            gpadls.isEmpty || random.chance(1, in: 10) ? random.interesting(UInt32.self) : random.pick(gpadls)
        }
        func vp() -> UInt32 { random.chance(1, in: 10) ? random.interesting(UInt32.self) : UInt32(random.int(0...1)) }
        switch random.int(0...11) {
        case 0:
            let version = random.chance(1, in: 6) ? VMBusVersion(rawValue: random.interesting(UInt32.self))
                                                  : random.pick(VMBusVersion.supported)
            return .initiateContact(InitiateContact(version: version, targetVP: vp(),
                                                    interruptPageOrTargetInfo: random.chance(1, in: 2) ? 2 : random.next(),
                                                    monitorPage1: 0x1000, monitorPage2: 0x2000))
        case 1:
            return .requestOffers(RequestOffers())
        case 2, 3:
            let id = random.chance(1, in: 2) ? UInt32(random.int(1...80)) : random.interesting(UInt32.self)
            gpadls.append(id)
            if gpadls.count > 32 { gpadls.removeFirst() }
            let count = random.chance(1, in: 8) ? random.int(0...2000) : random.int(2...40)
            let base = UInt64(random.int(0...16000))
            let pfns = (0..<count).map { offset -> UInt64 in
                random.chance(1, in: 50) ? random.interesting(UInt64.self) : base + UInt64(offset)
            }
            let messages = GPADLHeader.messages(gpadl: id, childRelID: relID(), pfns: pfns) ?? []
            // The header only: the bodies come as later cases (or never).
            return messages.first ?? .gpadlBody(GPADLBody(gpadl: id, pfns: Array(pfns.prefix(28))))
        case 4:
            let pfns = (0..<random.int(0...28)).map { _ in UInt64(random.int(0...20000)) }
            return .gpadlBody(GPADLBody(messageNumber: UInt32(random.int(0...3)), gpadl: gpadl(), pfns: pfns))
        case 5, 6:
            return .openChannel(OpenChannel(childRelID: relID(), openID: UInt32(truncatingIfNeeded: random.next()),
                                            ringBufferGPADL: gpadl(), targetVP: vp(),
                                            downstreamRingBufferPageOffset: random.chance(1, in: 5)
                                                ? random.interesting(UInt32.self) : UInt32(random.int(1...20))))
        case 7:
            return .closeChannel(CloseChannel(childRelID: relID()))
        case 8:
            return .gpadlTeardown(GPADLTeardown(childRelID: relID(), gpadl: gpadl()))
        case 9:
            return .relIDReleased(RelIDReleased(childRelID: relID()))
        case 10:
            return .modifyChannel(ModifyChannel(childRelID: relID(), targetVP: vp()))
        default:
            return random.chance(1, in: 2) ? .unload(Unload()) : .unknown(type: random.interesting(UInt32.self),
                                                                        payload: random.bytes(random.int(0...64)))
        }
    }
}
