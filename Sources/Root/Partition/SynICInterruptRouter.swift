import HyperV
import HypervisorInterface
import KVM
import LinuxSupport
import Synchronization

/// Delivers SINT interrupts through KVM without the root on the path.
///
/// Each (virtual processor, SINT) pair that is ever used gets a *doorbell*: an eventfd bound
/// with KVM_IRQFD to an MSI route carrying the SINT's vector and the processor's APIC ID.
/// Whoever signals the doorbell (the parent partition, for channel events) raises the interrupt
/// in the kernel. The root rings a second eventfd of its own bound to the same route: the
/// parent's is shared with it, and a parent could fill its counter so that a write to it would
/// block (a compromised parent must not be able to stop a processor that delivers a message).
///
/// While a SINT may not interrupt (SynIC disabled, SINT masked or polled) its irqfd is
/// unbound, so signals only count up in the eventfd; KVM injects a pending count when the
/// irqfd is bound again (kvm_irqfd_assign checks the eventfd), so nothing is injected while
/// masked and nothing is lost.
final class SynICInterruptRouter: Sendable {
    private let machine: KVMVirtualMachine
    private let apicIDs: [UInt32]
    private let doorbells = Mutex<[DoorbellKey: Doorbell]>([:])

    struct DoorbellKey: Hashable {
        var vp: UInt32
        var sint: Int
    }

    final class Doorbell: Sendable {
        /// The parent's.
        let event: EventFD
        /// The root's own, never shared (non-blocking: a write to a full counter fails at once,
        /// and the interrupt is pending anyway).
        let rootEvent: EventFD
        let gsi: UInt32
        let bound: Atomic<Bool>
        let vector: Atomic<UInt8>

        init(event: EventFD, rootEvent: EventFD, gsi: UInt32, vector: UInt8) {
            self.event = event
            self.rootEvent = rootEvent
            self.gsi = gsi
            bound = Atomic(false)
            self.vector = Atomic(vector)
        }
    }

    init(machine: KVMVirtualMachine, apicIDs: [UInt32]) {
        self.machine = machine
        self.apicIDs = apicIDs
    }

    /// The doorbell for `sint` on `vp`, created (unbound, vector 0) if it does not exist.
    func doorbell(vp: UInt32, sint: Int) throws -> EventFD {
        try doorbellEntry(vp: vp, sint: sint, vector: 0).event
    }

    private func doorbellEntry(vp: UInt32, sint: Int, vector: UInt8) throws -> Doorbell {
        try doorbells.withLock { table throws -> Doorbell in
            let key = DoorbellKey(vp: vp, sint: sint)
            if let existing = table[key] { return existing }
            let event = try EventFD()
            let rootEvent = try EventFD(nonBlocking: true)
            let gsi = try machine.addMSIRoute(.fixed(vector: vector, apicID: apicIDs[Int(vp)]))
            let doorbell = Doorbell(event: event, rootEvent: rootEvent, gsi: gsi, vector: vector)
            table[key] = doorbell
            return doorbell
        }
    }

    /// Rebinds the doorbell of (`vp`, `sint`) for a new vector and deliverability.
    func configure(vp: UInt32, sint: Int, vector: UInt8, interruptsEnabled: Bool) throws {
        let existing = doorbells.withLock { $0[DoorbellKey(vp: vp, sint: sint)] }
        guard interruptsEnabled || existing != nil else { return }
        let doorbell = try existing ?? doorbellEntry(vp: vp, sint: sint, vector: vector)
        if doorbell.bound.load(ordering: .acquiring) {
            // Both are tried, and the doorbell counts as unbound even if one fails (the next
            // configure then binds afresh rather than failing to unbind it again).
            doorbell.bound.store(false, ordering: .releasing)
            var failure: KVMError?
            do throws(KVMError) { try machine.deassignIRQFD(doorbell.event, gsi: doorbell.gsi) } catch { failure = error }
            do throws(KVMError) { try machine.deassignIRQFD(doorbell.rootEvent, gsi: doorbell.gsi) } catch { failure = failure ?? error }
            if let failure { throw failure }
        }
        if doorbell.vector.load(ordering: .acquiring) != vector {
            try machine.updateMSIRoute(gsi: doorbell.gsi, .fixed(vector: vector, apicID: apicIDs[Int(vp)]))
            doorbell.vector.store(vector, ordering: .releasing)
        }
        if interruptsEnabled {
            // Binding injects any count that arrived while unbound.
            try machine.assignIRQFD(doorbell.event, gsi: doorbell.gsi)
            do {
                try machine.assignIRQFD(doorbell.rootEvent, gsi: doorbell.gsi)
            } catch {
                try? machine.deassignIRQFD(doorbell.event, gsi: doorbell.gsi)
                throw error
            }
            doorbell.bound.store(true, ordering: .releasing)
        }
    }

    /// Rings the doorbell of (`vp`, `sint`).
    func raise(vp: UInt32, sint: Int) {
        if let doorbell = doorbells.withLock({ $0[DoorbellKey(vp: vp, sint: sint)] }) {
            doorbell.rootEvent.signal()
        }
    }

    /// Unbinds every irqfd (before the virtual machine goes away).
    func unbindAll() {
        let all = doorbells.withLock { Array($0.values) }
        for doorbell in all where doorbell.bound.load(ordering: .acquiring) {
            try? machine.deassignIRQFD(doorbell.event, gsi: doorbell.gsi)
            try? machine.deassignIRQFD(doorbell.rootEvent, gsi: doorbell.gsi)
            doorbell.bound.store(false, ordering: .releasing)
        }
    }
}
