import FuzzSupport
import GuestMemory
import HyperV
import HypervisorInterface
import LinuxSupport
import Synchronization

/// The Hyper-V interface a guest reaches through exits, as the root emulates it (`HvPartition`):
/// synthetic MSR reads and writes on every processor (overlay pages inside, outside and
/// straddling RAM, SINTs, SCONTROL, EOM, crash MSRs, unknown indices), hypercalls through the
/// page's slow path with every control-word shape and input blocks at aligned, unaligned,
/// straddling and absent addresses, the fast HvSignalEvent exit, messages the parent posts, and
/// the guest consuming (or not) its message slots. It checks that nothing traps and that every
/// SINT's queue stays within its limit.
enum HypervisorFuzzTarget: FuzzTarget {
    static let name = "hypervisor"
    static let summary = "hypercalls, synthetic MSRs and the SynIC (HvPartition) as a guest drives them"
    static let sessionLength = 5000

    static let processors = 2
    static let memorySize = 2 << 20

    /// The environment of a fuzzed partition: interrupts go nowhere.
    final class Environment: HvEnvironment {
        func hostTimestampCounter() -> UInt64 { TimestampCounter.read() }
        func guestTimestampCounter(vp: UInt32) -> UInt64? { vp == 0 ? TimestampCounter.read() : nil }
        func sintChanged(vp: UInt32, sint: Int, vector: UInt8, interruptsEnabled: Bool) {}
        func raiseSINT(vp: UInt32, sint: Int) {}
        func synicPagesChanged(vp: UInt32, pages: SynICPages) {}
        func guestCrashReported(parameters: [UInt64], message: String?) {}
    }

    /// A message connection whose receiver answers as a parent might: taken, or its queue full.
    final class Receiver: HvMessageConnection {
        let answers = Atomic<UInt64>(0)
        func receive(from vp: UInt32, type: SynICMessageType, payload: [UInt8]) -> HypercallStatus {
            answers.wrappingAdd(1, ordering: .relaxed).oldValue % 7 == 0 ? .insufficientBuffers : .success
        }
    }

    static func runSession(seed: UInt64, cases: Int, progress: (Int) -> Void) -> [FuzzFinding] {
        var random = FuzzRandom(seed: seed)
        let memory: GuestMemory
        let events: [EventFD]
        do {
            memory = try GuestMemory.create(name: "hv-fuzz-hypervisor", size: memorySize)
            events = try (0..<2).map { _ in try EventFD() }
        } catch {
            return [FuzzFinding(caseIndex: 0, message: "cannot set up the partition: \(error)")]
        }
        let time = ReferenceTimeParameters(tscFrequencyHz: 2_000_000_000, guestTSCAtCreation: 1000,
                                           hostTSCAtCreation: TimestampCounter.read())
        let partition = HvPartition(memory: memory, apicIDs: (0..<UInt32(processors)).map { $0 }, time: time,
                                    environment: Environment())
        partition.connections.registerMessageConnection(ConnectionID(1), receiver: Receiver())
        partition.connections.registerMessageConnection(ConnectionID(4), receiver: Receiver())
        partition.connections.registerEventConnection(ConnectionID(0x2001), event: events[0])
        partition.connections.registerEventConnection(ConnectionID(0x2002), event: events[1])
        var findings: [FuzzFinding] = []
        let pages = UInt64(memorySize / 4096)
        func gpa() -> UInt64 {
            switch random.int(0...5) {
            case 0: return random.interesting(UInt64.self)
            case 1: return UInt64(random.int(0...Int(pages - 1))) * 4096 + UInt64(random.int(0...4095))
            default: return UInt64(random.int(0...Int(pages + 2))) * 4096
            }
        }
        for index in 0..<cases {
            let vp = random.chance(1, in: 20) ? random.int(-1...5) : random.int(0...(processors - 1))
            switch random.int(0...9) {
            case 0...2:
                let msr = msrIndex(&random)
                let value: UInt64
                switch random.int(0...3) {
                case 0: value = random.interesting(UInt64.self)
                case 1: value = gpa() | UInt64(random.int(0...1))
                default: value = (UInt64(random.int(0...Int(pages))) * 4096) | 1
                }
                _ = partition.writeMSR(vp: vp, index: msr, value: value)
            case 3:
                _ = partition.readMSR(vp: vp, index: msrIndex(&random))
            case 4, 5:
                let input = gpa() & (random.chance(4, in: 5) ? ~UInt64(7) : ~0)
                var block = random.bytes(PostMessageInput.size)
                block.storeLittleEndian(UInt32(random.pick([1, 4, 0x2001, 7])), at: PostMessageInput.connectionIDOffset)
                block.storeLittleEndian(UInt32(random.int(0...3)), at: PostMessageInput.messageTypeOffset)
                block.storeLittleEndian(random.chance(4, in: 5) ? UInt32(random.int(0...240)) : random.interesting(UInt32.self),
                                        at: PostMessageInput.payloadSizeOffset)
                try? memory.write(Array(block.prefix(max(0, min(block.count, memorySize - Int(input % UInt64(memorySize)))))),
                                  at: GuestPhysicalAddress(input % UInt64(memorySize)))
                let code = UInt64(random.pick([0x5C, 0x5D, 0x5D, 0x5C, UInt16(truncatingIfNeeded: random.next())]))
                var control = code
                if random.chance(1, in: 3) { control |= 1 << 16 }
                if random.chance(1, in: 8) { control |= random.interesting(UInt64.self) & ~0xFFFF }
                // The root calls with its own processor's index, always a real one.
                _ = partition.hypercall(vp: max(0, min(vp, processors - 1)), HypercallRegisters(control: control, input: random.chance(1, in: 3)
                                            ? UInt64(random.pick([0x2001, 0x2002, 0x1_2001, 7])) : input,
                                                                   output: gpa()))
            case 6:
                _ = partition.signalEventFastPathExit(connectionID: random.chance(1, in: 2)
                                                      ? UInt32(random.pick([0x2001, 0x2002])) : random.interesting(UInt32.self))
            case 7:
                _ = partition.postMessage(vp: vp, sint: random.int(-1...16),
                                          type: SynICMessageType(rawValue: random.interesting(UInt32.self)),
                                          payload: random.bytes(random.chance(9, in: 10) ? random.int(0...240) : random.int(241...300)))
            case 8:
                // The guest consumes a message: clears the slot's type, then EOM.
                if let processor = partition.processors.indices.contains(vp) ? partition.processors[vp] : nil,
                   let page = processor.pages.messagePage {
                    let sint = random.int(0...15)
                    try? memory.atomicStore(0, at: GuestPhysicalAddress(page + UInt64(SynIC.messageSlotOffset(sint: sint))),
                                            ordering: .releasing)
                    _ = partition.writeMSR(vp: vp, index: SyntheticMSR.endOfMessage.rawValue, value: 0)
                }
            default:
                // Scribble over a SynIC page the guest owns.
                if let processor = partition.processors.indices.contains(vp) ? partition.processors[vp] : nil,
                   let page = random.chance(1, in: 2) ? processor.pages.messagePage : processor.pages.eventFlagsPage {
                    try? memory.write(random.bytes(random.int(1...64)), at: GuestPhysicalAddress(page + UInt64(random.int(0...4000))))
                }
            }
            for processor in partition.processors {
                for sint in 0..<SynIC.sintCount where processor.queuedMessageCount(sint: sint) > HvVirtualProcessor.queueLimit {
                    findings.append(FuzzFinding(caseIndex: index, message: "SINT \(sint) of VP \(processor.index) holds "
                                                + "\(processor.queuedMessageCount(sint: sint)) messages"))
                }
            }
            if index % 512 == 511 { progress(index + 1) }
            if findings.count > 20 { break }
        }
        progress(cases)
        return findings
    }

    /// A synthetic MSR index: usually a defined one, sometimes anything in (or just outside) the range.
    static func msrIndex(_ random: inout FuzzRandom) -> UInt32 {
        switch random.int(0...9) {
        case 0: return random.interesting(UInt32.self)
        case 1: return UInt32(random.int(0x4000_0000...0x4000_0200))
        case 2...4: return 0x4000_0090 + UInt32(random.int(0...15))  // SINTx
        default:
            return random.pick([0x4000_0000, 0x4000_0001, 0x4000_0002, 0x4000_0020, 0x4000_0021, 0x4000_0022, 0x4000_0073,
                                0x4000_0080, 0x4000_0081, 0x4000_0082, 0x4000_0083, 0x4000_0084, 0x4000_0100, 0x4000_0103,
                                0x4000_0104, 0x4000_0105, 0x4000_0118])
        }
    }
}
