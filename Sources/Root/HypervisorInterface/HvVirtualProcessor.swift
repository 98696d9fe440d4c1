import GuestMemory
import HyperV
import Synchronization

/// The synthetic interrupt controller of one virtual processor (TLFS "SynIC";
/// Docs/hyperv-interface.md §4): its MSRs, its message page and the per-SINT queues of
/// messages waiting for a free slot.
public final class HvVirtualProcessor: Sendable {
    /// The VP index the guest reads from VP_INDEX.
    public let index: UInt32
    /// The local APIC ID that SINT interrupts are sent to.
    public let apicID: UInt32
    private let memory: GuestMemory
    private let environment: any HvEnvironment
    private let state: Mutex<SynICState>
    private let counters: SynICCounters

    /// Messages queued per SINT before HvPostMessage reports INSUFFICIENT_BUFFERS.
    public static let queueLimit = 64

    struct SynICState {
        var assistPage: UInt64 = 0
        var control: UInt64 = 0
        var eventFlagsPage = OverlayPageRegister(rawValue: 0)
        var messagePage = OverlayPageRegister(rawValue: 0)
        var sints = [SINTRegister](repeating: .reset, count: SynIC.sintCount)
        var queues = [[QueuedMessage]](repeating: [], count: SynIC.sintCount)

        var isEnabled: Bool { control & 1 != 0 }

        func interruptsEnabled(_ sint: Int) -> Bool {
            let register = sints[sint]
            return isEnabled && !register.isMasked && !register.isPolling && register.vector >= 16
        }

        var pages: SynICPages {
            SynICPages(enabled: isEnabled,
                       messagePage: messagePage.isEnabled ? messagePage.pageAddress : nil,
                       eventFlagsPage: eventFlagsPage.isEnabled ? eventFlagsPage.pageAddress : nil)
        }
    }

    struct QueuedMessage {
        var type: SynICMessageType
        var sender: UInt64
        var payload: [UInt8]
    }

    init(index: UInt32, apicID: UInt32, memory: GuestMemory, environment: any HvEnvironment,
         counters: SynICCounters = SynICCounters()) {
        self.index = index
        self.counters = counters
        self.apicID = apicID
        self.memory = memory
        self.environment = environment
        state = Mutex(SynICState())
    }

    // MARK: MSRs

    func readMSR(_ msr: SyntheticMSR) -> UInt64? {
        state.withLock { state -> UInt64? in
            switch msr {
            case .vpAssistPage: return state.assistPage
            case .synicControl: return state.control
            case .synicVersion: return SynIC.version
            case .synicEventFlagsPage: return state.eventFlagsPage.rawValue
            case .synicMessagePage: return state.messagePage.rawValue
            case .endOfMessage: return 0
            default:
                if let sint = msr.sintIndex { return state.sints[sint].rawValue }
                return nil
            }
        }
    }

    /// Writes a per-processor MSR; `false` means the write faults (#GP).
    func writeMSR(_ msr: SyntheticMSR, value: UInt64) -> Bool {
        state.withLock { state -> Bool in
            switch msr {
            case .vpAssistPage:
                guard pageIsRAM(OverlayPageRegister(rawValue: value)) else { return false }
                state.assistPage = value & ~UInt64(0xFFE)
                return true
            case .synicControl:
                state.control = value & 1
                reconfigure(&state)
                return true
            case .synicEventFlagsPage, .synicMessagePage:
                let register = OverlayPageRegister(rawValue: value & ~UInt64(0xFFE))
                guard pageIsRAM(register) else { return false }
                let old = msr == .synicMessagePage ? state.messagePage : state.eventFlagsPage
                // Overlay semantics: a page that becomes enabled, or moves, starts out zeroed.
                if register.isEnabled && (!old.isEnabled || old.pageAddress != register.pageAddress) {
                    try? memory.fill(0, at: GuestPhysicalAddress(register.pageAddress), count: SynIC.pageSize)
                }
                if msr == .synicMessagePage { state.messagePage = register } else { state.eventFlagsPage = register }
                reconfigure(&state)
                return true
            case .endOfMessage:
                deliverQueued(&state)
                return true
            default:
                guard let sint = msr.sintIndex else { return false }
                state.sints[sint] = SINTRegister(rawValue: value & SINTRegister.writableBits)
                environment.sintChanged(vp: index, sint: sint, vector: state.sints[sint].vector,
                                        interruptsEnabled: state.interruptsEnabled(sint))
                deliverQueued(&state)
                return true
            }
        }
    }

    private func pageIsRAM(_ register: OverlayPageRegister) -> Bool {
        !register.isEnabled || memory.contains(GuestPhysicalAddress(register.pageAddress), length: SynIC.pageSize)
    }

    /// After SCONTROL, SIMP or SIEFP changed: tell the environment, then deliver what waits.
    private func reconfigure(_ state: inout SynICState) {
        environment.synicPagesChanged(vp: index, pages: state.pages)
        for sint in 0..<SynIC.sintCount {
            environment.sintChanged(vp: index, sint: sint, vector: state.sints[sint].vector,
                                    interruptsEnabled: state.interruptsEnabled(sint))
        }
        deliverQueued(&state)
    }

    // MARK: Messages

    /// The result of posting a message to a virtual processor.
    public enum PostResult: Equatable, Sendable {
        /// Written to the SINT's message slot.
        case delivered
        /// Queued behind a busy slot, a masked SINT or a disabled SynIC.
        case queued
        /// The SINT's queue is full.
        case queueFull
    }

    /// Posts a message to SINT `sint` (Docs/hyperv-interface.md §4.3): written into the slot if
    /// it is free and the SINT can take it, otherwise queued until EOM or reconfiguration.
    public func postMessage(sint: Int, type: SynICMessageType, payload: [UInt8], sender: UInt64 = 0) -> PostResult {
        precondition((0..<SynIC.sintCount).contains(sint) && payload.count <= SynIC.maximumMessagePayload)
        return state.withLock { state -> PostResult in
            guard state.queues[sint].count < Self.queueLimit else { return .queueFull }
            state.queues[sint].append(QueuedMessage(type: type, sender: sender, payload: payload))
            let wasDelivered = deliver(sint: sint, &state)
            return wasDelivered && state.queues[sint].isEmpty ? .delivered : .queued
        }
    }

    /// Messages waiting for `sint`'s slot.
    public func queuedMessageCount(sint: Int) -> Int {
        state.withLock { $0.queues[sint].count }
    }

    /// A snapshot of the SynIC pages.
    public var pages: SynICPages { state.withLock { $0.pages } }

    /// The SINT register `sint`.
    public func sint(_ sint: Int) -> SINTRegister { state.withLock { $0.sints[sint] } }

    private func deliverQueued(_ state: inout SynICState) {
        for sint in 0..<SynIC.sintCount where !state.queues[sint].isEmpty {
            _ = deliver(sint: sint, &state)
        }
    }

    /// Moves the head of `sint`'s queue into its slot if possible.
    /// - Returns: whether a message was written.
    private func deliver(sint: Int, _ state: inout SynICState) -> Bool {
        guard state.isEnabled, state.messagePage.isEnabled, !state.sints[sint].isMasked,
              let message = state.queues[sint].first else { return false }
        let slot = GuestPhysicalAddress(state.messagePage.pageAddress + UInt64(SynIC.messageSlotOffset(sint: sint)))
        let typeAddress = slot
        guard let flagsWord = slot.advanced(by: UInt64(MessageSlot.payloadSizeOffset)) else { return false }
        do throws(GuestMemoryError) {
            if try memory.atomicLoad(UInt32.self, at: typeAddress, ordering: .acquiring) != SynICMessageType.none.rawValue {
                // Busy: ask the guest for an EOM, then look again in case it freed the slot
                // between our load and the flag (it checks msg_pending after clearing the type).
                try memory.atomicOr(MessageSlot.messagePendingBitInWord, at: flagsWord, ordering: .sequentiallyConsistent)
                GuestMemory.fullBarrier()
                if try memory.atomicLoad(UInt32.self, at: typeAddress, ordering: .acquiring) != SynICMessageType.none.rawValue {
                    return false
                }
            }
            // The slot is ours until the type is published: fill it, then release the type.
            var body = [UInt8](repeating: 0, count: SynIC.messageSlotSize - MessageSlot.payloadSizeOffset)
            body[0] = UInt8(message.payload.count)
            body[1] = state.queues[sint].count > 1 ? 1 : 0  // msg_pending: more are waiting
            body.storeLittleEndian(message.sender, at: MessageSlot.senderOffset - MessageSlot.payloadSizeOffset)
            let payloadStart = MessageSlot.payloadOffset - MessageSlot.payloadSizeOffset
            body.replaceSubrange(payloadStart..<(payloadStart + message.payload.count), with: message.payload)
            try memory.write(body, at: flagsWord)
            try memory.atomicStore(message.type.rawValue, at: typeAddress, ordering: .releasing)
        } catch {
            return false
        }
        state.queues[sint].removeFirst()
        counters.messagesDelivered.wrappingAdd(1, ordering: .relaxed)
        if state.interruptsEnabled(sint) {
            environment.raiseSINT(vp: index, sint: sint)
        }
        return true
    }
}
