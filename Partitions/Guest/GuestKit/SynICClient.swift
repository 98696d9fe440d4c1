import HyperV
import Synchronization

/// The guest side of one virtual processor's SynIC: its message page and event-flags page
/// (Docs/hyperv-interface.md §4), and the interrupt counters the SINT handlers bump.
public struct SynICClient {
    public let vp: Int

    public init(vp: Int) {
        self.vp = vp
    }

    var messagePage: UnsafeMutableRawPointer { physical(_messagePages() + UInt64(vp) * 4096) }
    var eventFlagsPage: UnsafeMutableRawPointer { physical(_eventFlagPages() + UInt64(vp) * 4096) }

    /// Interrupts taken for the SINT whose handler slot is `slot` (0: SINT2, 1: SINT5, 2: SINT6).
    public static func interruptCount(slot: Int) -> UInt64 {
        let counts = physical(_sintInterruptCounts()).assumingMemoryBound(to: Atomic<UInt64>.self)
        return (counts + slot).pointee.load(ordering: .acquiring)
    }

    /// The VP index the processor read from VP_INDEX during set-up.
    public static func vpIndexSeen(_ vp: Int) -> UInt32 {
        physical(_vpIndexSeen()).load(fromByteOffset: vp * 4, as: UInt32.self)
    }

    /// A received message: its type, its payload and whether more are pending.
    public struct Message {
        public var type: UInt32
        public var payload: [UInt8]
        public var pending: Bool
    }

    private func slotType(_ sint: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        (messagePage + SynIC.messageSlotOffset(sint: sint)).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// Takes the message in `sint`'s slot, if any: copies it out, frees the slot the way Linux
    /// does (compare-exchange of the type to 0, then check msg_pending) and writes EOM when
    /// the hypervisor has more queued.
    public func receive(sint: Int) -> Message? {
        let slot = messagePage + SynIC.messageSlotOffset(sint: sint)
        let type = slotType(sint).pointee.load(ordering: .acquiring)
        if type == SynICMessageType.none.rawValue { return nil }
        let size = min(Int(slot.load(fromByteOffset: MessageSlot.payloadSizeOffset, as: UInt8.self)),
                       SynIC.maximumMessagePayload)
        var payload = [UInt8](repeating: 0, count: size)
        for index in 0..<size {
            payload[index] = slot.load(fromByteOffset: MessageSlot.payloadOffset + index, as: UInt8.self)
        }
        _ = slotType(sint).pointee.compareExchange(expected: type, desired: 0, ordering: .sequentiallyConsistent)
        let flags = slot.load(fromByteOffset: MessageSlot.flagsOffset, as: UInt8.self)
        let pending = flags & 1 != 0
        if pending { _endOfMessage() }
        return Message(type: type, payload: payload, pending: pending)
    }

    /// Atomically takes event flag `flag` of `sint` (as Linux's `lock btr`).
    public func takeEventFlag(sint: Int, flag: Int) -> Bool {
        let word = (eventFlagsPage + SynIC.eventFlagsOffset(sint: sint) + (flag / 64) * 8)
            .assumingMemoryBound(to: Atomic<UInt64>.self)
        let bit = UInt64(1) << UInt64(flag % 64)
        return word.pointee.bitwiseAnd(~bit, ordering: .acquiringAndReleasing).oldValue & bit != 0
    }
}

/// Hypercalls through the hypercall page.
public enum Hypercall {
    nonisolated(unsafe) static var inputPage: UnsafeMutableRawPointer? = nil

    static func input() -> UnsafeMutableRawPointer {
        if let inputPage { return inputPage }
        let page = Heap.allocate(size: 4096, alignment: 4096)!
        inputPage = page
        return page
    }

    /// HvPostMessage: returns the hypercall status.
    public static func postMessage(connection: UInt32, type: UInt32, payload: [UInt8]) -> HypercallStatus {
        let page = input()
        page.storeBytes(of: connection, toByteOffset: PostMessageInput.connectionIDOffset, as: UInt32.self)
        page.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
        page.storeBytes(of: type, toByteOffset: PostMessageInput.messageTypeOffset, as: UInt32.self)
        page.storeBytes(of: UInt32(payload.count), toByteOffset: PostMessageInput.payloadSizeOffset, as: UInt32.self)
        for (index, byte) in payload.enumerated() {
            page.storeBytes(of: byte, toByteOffset: PostMessageInput.payloadOffset + index, as: UInt8.self)
        }
        return raw(HypercallControl(code: .postMessage), input: UInt64(UInt(bitPattern: page)), output: 0)
    }

    /// HvPostMessage with a raw control word and input GPA (for hostile-input probes).
    public static func raw(_ control: HypercallControl, input: UInt64, output: UInt64) -> HypercallStatus {
        HypercallStatus(rawValue: UInt16(truncatingIfNeeded: _hypercall(control.rawValue, input, output)))
    }

    /// Fast HvSignalEvent on `connection` (flag 0): returns the hypercall status.
    public static func signalEvent(connection: UInt32) -> HypercallStatus {
        HypercallStatus(rawValue: UInt16(truncatingIfNeeded: _signalEvent(UInt64(connection))))
    }
}
