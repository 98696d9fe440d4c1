import HyperV
import HypervisorInterface
import KVM
import LinuxSupport
import Synchronization

/// Delivers SINT interrupts through KVM without the root on the path.
///
/// Each (virtual processor, SINT) pair that is ever used gets a *doorbell*: an eventfd bound
/// with KVM_IRQFD to an MSI route carrying the SINT's vector and the processor's APIC ID.
/// Whoever signals the doorbell (the root for messages, the parent partition for channel
/// events) raises the interrupt in the kernel.
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
        let event: EventFD
        let gsi: UInt32
        let bound: Atomic<Bool>
        let vector: Atomic<UInt8>

        init(event: EventFD, gsi: UInt32, vector: UInt8) {
            self.event = event
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
            let gsi = try machine.addMSIRoute(.fixed(vector: vector, apicID: apicIDs[Int(vp)]))
            let doorbell = Doorbell(event: event, gsi: gsi, vector: vector)
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
            try machine.deassignIRQFD(doorbell.event, gsi: doorbell.gsi)
            doorbell.bound.store(false, ordering: .releasing)
        }
        if doorbell.vector.load(ordering: .acquiring) != vector {
            try machine.updateMSIRoute(gsi: doorbell.gsi, .fixed(vector: vector, apicID: apicIDs[Int(vp)]))
            doorbell.vector.store(vector, ordering: .releasing)
        }
        if interruptsEnabled {
            // Binding injects any count that arrived while unbound.
            try machine.assignIRQFD(doorbell.event, gsi: doorbell.gsi)
            doorbell.bound.store(true, ordering: .releasing)
        }
    }

    /// Rings the doorbell of (`vp`, `sint`).
    func raise(vp: UInt32, sint: Int) {
        if let doorbell = doorbells.withLock({ $0[DoorbellKey(vp: vp, sint: sint)] }) {
            doorbell.event.signal()
        }
    }

    /// Unbinds every irqfd (before the virtual machine goes away).
    func unbindAll() {
        let all = doorbells.withLock { Array($0.values) }
        for doorbell in all where doorbell.bound.load(ordering: .acquiring) {
            try? machine.deassignIRQFD(doorbell.event, gsi: doorbell.gsi)
            doorbell.bound.store(false, ordering: .releasing)
        }
    }
}
