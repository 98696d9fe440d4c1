import GuestMemory
import HyperV
@testable import HypervisorInterface
import LinuxSupport
import Synchronization

/// An `HvEnvironment` that records what the emulation asks of it.
final class RecordingEnvironment: HvEnvironment {
    struct SINTConfiguration: Equatable {
        var vector: UInt8
        var interruptsEnabled: Bool
    }

    let tsc = Atomic<UInt64>(1_000_000)
    private let state = Mutex(State())

    struct State {
        var sints: [String: SINTConfiguration] = [:]
        var raised: [String] = []
        var pages: [UInt32: SynICPages] = [:]
        var crashes: [([UInt64], String?)] = []
    }

    func hostTimestampCounter() -> UInt64 { tsc.load(ordering: .relaxed) }

    /// When set, each processor's TSC as the host hypervisor reports it.
    let guestTSC = Mutex<[UInt32: UInt64]>([:])
    func guestTimestampCounter(vp: UInt32) -> UInt64? { guestTSC.withLock { $0[vp] } }

    func sintChanged(vp: UInt32, sint: Int, vector: UInt8, interruptsEnabled: Bool) {
        state.withLock { $0.sints["\(vp)/\(sint)"] = SINTConfiguration(vector: vector, interruptsEnabled: interruptsEnabled) }
    }

    func raiseSINT(vp: UInt32, sint: Int) {
        state.withLock { $0.raised.append("\(vp)/\(sint)") }
    }

    func synicPagesChanged(vp: UInt32, pages: SynICPages) {
        state.withLock { $0.pages[vp] = pages }
    }

    func guestCrashReported(parameters: [UInt64], message: String?) {
        state.withLock { $0.crashes.append((parameters, message)) }
    }

    var raised: [String] { state.withLock { $0.raised } }
    func sint(vp: UInt32, _ sint: Int) -> SINTConfiguration? { state.withLock { $0.sints["\(vp)/\(sint)"] } }
    func pages(vp: UInt32) -> SynICPages? { state.withLock { $0.pages[vp] } }
    var crashes: [([UInt64], String?)] { state.withLock { $0.crashes } }
}

/// A message receiver that records and answers with a fixed status.
final class RecordingReceiver: HvMessageConnection {
    let status: HypercallStatus
    private let received = Mutex<[(UInt32, SynICMessageType, [UInt8])]>([])

    init(status: HypercallStatus = .success) {
        self.status = status
    }

    func receive(from vp: UInt32, type: SynICMessageType, payload: [UInt8]) -> HypercallStatus {
        received.withLock { $0.append((vp, type, payload)) }
        return status
    }

    var messages: [(UInt32, SynICMessageType, [UInt8])] { received.withLock { $0 } }
}

/// A partition over 4 MiB of memfd-backed RAM, no KVM involved.
struct Fixture {
    static let memorySize = 4 << 20
    static let tscHz: UInt64 = 2_500_000_000
    let memory: GuestMemory
    let environment = RecordingEnvironment()
    let partition: HvPartition

    init(processors: Int = 2) throws {
        memory = try GuestMemory.create(name: "hv-test", size: Self.memorySize)
        let time = ReferenceTimeParameters(tscFrequencyHz: Self.tscHz, guestTSCAtCreation: 5_000, hostTSCAtCreation: 1_000_000)
        partition = HvPartition(memory: memory, apicIDs: (0..<UInt32(processors)).map { $0 }, time: time,
                                environment: environment)
    }

    /// Enables the SynIC of `vp` with its message page at `simp` and event page at `siefp`, and
    /// SINT `sint` with `vector`.
    func enableSynIC(vp: Int = 0, simp: UInt64 = 0x10000, siefp: UInt64 = 0x11000, sint: Int = 2, vector: UInt8 = 0xF3) {
        _ = partition.writeMSR(vp: vp, index: SyntheticMSR.synicMessagePage.rawValue, value: simp | 1)
        _ = partition.writeMSR(vp: vp, index: SyntheticMSR.synicEventFlagsPage.rawValue, value: siefp | 1)
        _ = partition.writeMSR(vp: vp, index: SyntheticMSR.sint(sint).rawValue, value: UInt64(vector))
        _ = partition.writeMSR(vp: vp, index: SyntheticMSR.synicControl.rawValue, value: 1)
    }

    /// Writes an HvPostMessage input block at `address`.
    func writePostMessageInput(at address: UInt64, connection: UInt32, type: UInt32, payloadSize: UInt32,
                               payload: [UInt8] = []) throws {
        var block = [UInt8](repeating: 0, count: PostMessageInput.size)
        block.storeLittleEndian(connection, at: PostMessageInput.connectionIDOffset)
        block.storeLittleEndian(type, at: PostMessageInput.messageTypeOffset)
        block.storeLittleEndian(payloadSize, at: PostMessageInput.payloadSizeOffset)
        block.replaceSubrange(PostMessageInput.payloadOffset..<(PostMessageInput.payloadOffset + payload.count), with: payload)
        try memory.write(block, at: GuestPhysicalAddress(address))
    }

    /// The guest's side of a message slot, as Linux does it (vmbus_signal_eom): copy out,
    /// compare-exchange the type to 0, then write EOM if msg_pending was set.
    func takeMessage(vp: Int = 0, simp: UInt64 = 0x10000, sint: Int = 2) throws -> (type: UInt32, payload: [UInt8])? {
        let slot = GuestPhysicalAddress(simp + UInt64(SynIC.messageSlotOffset(sint: sint)))
        let type = try memory.atomicLoad(UInt32.self, at: slot, ordering: .acquiring)
        guard type != 0 else { return nil }
        let size = Int(try memory.load(UInt8.self, at: slot.advanced(by: 4)!))
        let payload = try memory.read(at: slot.advanced(by: 16)!, count: min(size, 240))
        _ = try memory.compareExchange(expected: type, desired: 0, at: slot)
        let flags = try memory.load(UInt8.self, at: slot.advanced(by: 5)!)
        if flags & 1 != 0 {
            _ = partition.writeMSR(vp: vp, index: SyntheticMSR.endOfMessage.rawValue, value: 0)
        }
        return (type, payload)
    }
}
