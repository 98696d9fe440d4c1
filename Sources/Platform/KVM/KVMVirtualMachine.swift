import CKVM
import Glibc
import LinuxSupport
import Synchronization
import SystemPackage

/// A KVM virtual machine: memory slots, the in-kernel interrupt controller, interrupt routes,
/// irqfds, ioeventfds, the MSR filter, and the factory for virtual CPUs.
///
/// VM ioctls are thread-safe in the kernel; the GSI routing table, which KVM only accepts
/// whole, is kept here under a lock.
public final class KVMVirtualMachine: Sendable {
    let fd: OwnedDescriptor
    let system: KVMSystem
    private let routes: Mutex<RoutingTable>

    init(fd: OwnedDescriptor, system: KVMSystem) {
        self.fd = fd
        self.system = system
        routes = Mutex(RoutingTable())
    }

    /// Creates the in-kernel PIC, IOAPIC and per-vCPU local APICs (KVM_CREATE_IRQCHIP), after
    /// the Intel-only TSS and identity-map regions are placed out of the way below 4 GiB.
    public func createInterruptController() throws(KVMError) {
        _ = try kvmIoctl(fd.rawValue, CKVM_SET_TSS_ADDR, value: Int32(bitPattern: 0xFFFB_D000), .setTSSAddress)
        var identityMap: UInt64 = 0xFFFB_C000
        _ = try kvmIoctl(fd.rawValue, CKVM_SET_IDENTITY_MAP_ADDR, &identityMap, .setIdentityMapAddress)
        _ = try kvmIoctl(fd.rawValue, CKVM_CREATE_IRQCHIP, nil, .createIRQChip)
        try routes.withLock { table throws(KVMError) in
            table.hasIRQChip = true
            try submit(table)
        }
    }

    /// Enables MSR exits to user space and filters the Hyper-V synthetic range, so every access
    /// to `filteredRange` exits (KVM_EXIT_X86_RDMSR/WRMSR) whatever the host's kvm.ignore_msrs is.
    public func filterMSRs(_ filteredRange: ClosedRange<UInt32>) throws(KVMError) {
        var capability = kvm_enable_cap()
        capability.cap = UInt32(KVM_CAP_X86_USER_SPACE_MSR)
        capability.args.0 = UInt64(KVM_MSR_EXIT_REASON_FILTER | KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_INVAL)
        _ = try kvmIoctl(fd.rawValue, CKVM_ENABLE_CAP, &capability, .enableCapability)

        let count = filteredRange.count
        // All-zero bitmap: every MSR in the range is denied to the kernel, so it exits.
        var bitmap = [UInt8](repeating: 0, count: (count + 7) / 8)
        try withMutableBytes(of: &bitmap) { bitmapBytes throws(KVMError) in
            var filter = kvm_msr_filter()
            filter.flags = UInt32(KVM_MSR_FILTER_DEFAULT_ALLOW)
            filter.ranges.0.flags = UInt32(KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE)
            filter.ranges.0.nmsrs = UInt32(count)
            filter.ranges.0.base = filteredRange.lowerBound
            // SAFETY: the bitmap outlives the ioctl, which copies it.
            filter.ranges.0.bitmap = bitmapBytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
            _ = try kvmIoctl(fd.rawValue, CKVM_X86_SET_MSR_FILTER, &filter, .setMSRFilter)
        }
    }

    /// Maps `size` bytes of host memory at `hostAddress` as guest physical `guestAddress`.
    /// - Important: the host memory must stay mapped until the slot is removed or the VM is
    ///   destroyed; callers pass memory owned by a `GuestMemory` that outlives this VM.
    public func mapMemory(slot: UInt32, guestAddress: UInt64, size: Int, hostAddress: UInt64) throws(KVMError) {
        var region = kvm_userspace_memory_region()
        region.slot = slot
        region.guest_phys_addr = guestAddress
        region.memory_size = UInt64(size)
        region.userspace_addr = hostAddress
        _ = try kvmIoctl(fd.rawValue, CKVM_SET_USER_MEMORY_REGION, &region, .setUserMemoryRegion)
    }

    /// Injects an MSI now (KVM_SIGNAL_MSI).
    /// - Returns: whether an interrupt was delivered (false if it was blocked, e.g. the APIC
    ///   is software-disabled).
    @discardableResult
    public func signalMSI(_ message: MSIMessage) throws(KVMError) -> Bool {
        var msi = kvm_msi()
        msi.address_lo = UInt32(truncatingIfNeeded: message.address)
        msi.address_hi = UInt32(truncatingIfNeeded: message.address >> 32)
        msi.data = message.data
        return try kvmIoctl(fd.rawValue, CKVM_SIGNAL_MSI, &msi, .signalMSI) > 0
    }

    /// Adds an MSI route and returns its GSI.
    public func addMSIRoute(_ message: MSIMessage) throws(KVMError) -> UInt32 {
        try addRoute(.msi(message))
    }

    /// Adds a route to pin `pin` of the in-kernel IOAPIC only (not the PIC), and returns its GSI:
    /// an irqfd bound to it raises that ISA/IOAPIC line as an edge.
    public func addIOAPICRoute(pin: UInt32) throws(KVMError) -> UInt32 {
        try addRoute(.ioapic(pin: pin))
    }

    private func addRoute(_ route: RoutingTable.Route) throws(KVMError) -> UInt32 {
        try routes.withLock { table throws(KVMError) in
            let gsi = table.allocate(route)
            do throws(KVMError) {
                try submit(table)
            } catch {
                table.remove(gsi)
                throw error
            }
            return gsi
        }
    }

    /// Points an existing MSI route at a new address/data pair (e.g. a reprogrammed SINT vector).
    public func updateMSIRoute(gsi: UInt32, _ message: MSIMessage) throws(KVMError) {
        try routes.withLock { table throws(KVMError) in
            table.routes[gsi] = .msi(message)
            try submit(table)
        }
    }

    /// Removes an MSI route.
    public func removeMSIRoute(gsi: UInt32) throws(KVMError) {
        try routes.withLock { table throws(KVMError) in
            table.remove(gsi)
            try submit(table)
        }
    }

    private func submit(_ table: RoutingTable) throws(KVMError) {
        let entries = table.entries
        let headerSize = MemoryLayout<kvm_irq_routing>.size
        let stride = MemoryLayout<kvm_irq_routing_entry>.stride
        var storage = [UInt64](repeating: 0, count: (headerSize + entries.count * stride + 7) / 8)
        try withMutableBytes(of: &storage) { bytes throws(KVMError) in
            // SAFETY: the buffer holds the header plus `entries.count` entries, 8-byte aligned.
            bytes.baseAddress!.assumingMemoryBound(to: kvm_irq_routing.self).pointee.nr = UInt32(entries.count)
            for (index, entry) in entries.enumerated() {
                bytes.baseAddress!.storeBytes(of: entry, toByteOffset: headerSize + index * stride,
                                              as: kvm_irq_routing_entry.self)
            }
            _ = try kvmIoctl(fd.rawValue, CKVM_SET_GSI_ROUTING, bytes.baseAddress, .setGSIRouting)
        }
    }

    /// Binds `event` to `gsi`: every signal of the eventfd raises the interrupt in the kernel,
    /// without a user-space exit (KVM_IRQFD).
    public func assignIRQFD(_ event: EventFD, gsi: UInt32) throws(KVMError) {
        var request = kvm_irqfd()
        request.fd = UInt32(bitPattern: event.rawValue)
        request.gsi = gsi
        _ = try kvmIoctl(fd.rawValue, CKVM_IRQFD, &request, .irqfd)
    }

    /// Unbinds `event` from `gsi`; signals that arrive afterwards stay counted in the eventfd.
    public func deassignIRQFD(_ event: EventFD, gsi: UInt32) throws(KVMError) {
        var request = kvm_irqfd()
        request.fd = UInt32(bitPattern: event.rawValue)
        request.gsi = gsi
        request.flags = UInt32(KVM_IRQFD_FLAG_DEASSIGN)
        _ = try kvmIoctl(fd.rawValue, CKVM_IRQFD, &request, .irqfd)
    }

    /// Registers `event` to be signalled in the kernel when the guest writes `value` (4 bytes)
    /// to I/O port `port` (KVM_IOEVENTFD with DATAMATCH); such writes never exit to user space.
    public func assignIOEventFD(_ event: EventFD, port: UInt16, value: UInt32) throws(KVMError) {
        var request = ioEventRequest(event, port: port, value: value)
        _ = try kvmIoctl(fd.rawValue, CKVM_IOEVENTFD, &request, .ioeventfd)
    }

    /// Removes a registration made with `assignIOEventFD`.
    public func deassignIOEventFD(_ event: EventFD, port: UInt16, value: UInt32) throws(KVMError) {
        var request = ioEventRequest(event, port: port, value: value)
        request.flags |= CKVM_IOEVENTFD_FLAG_DEASSIGN
        _ = try kvmIoctl(fd.rawValue, CKVM_IOEVENTFD, &request, .ioeventfd)
    }

    private func ioEventRequest(_ event: EventFD, port: UInt16, value: UInt32) -> kvm_ioeventfd {
        var request = kvm_ioeventfd()
        request.datamatch = UInt64(value)
        request.addr = UInt64(port)
        request.len = 4
        request.fd = event.rawValue
        request.flags = CKVM_IOEVENTFD_FLAG_PIO | CKVM_IOEVENTFD_FLAG_DATAMATCH
        return request
    }

    /// Raises or lowers an interrupt line of the in-kernel PIC/IOAPIC (KVM_IRQ_LINE).
    public func setInterruptLine(_ irq: UInt32, level: Bool) throws(KVMError) {
        var line = kvm_irq_level()
        line.irq = irq
        line.level = level ? 1 : 0
        _ = try kvmIoctl(fd.rawValue, CKVM_IRQ_LINE, &line, .irqLine)
    }

    /// Creates virtual CPU `id` (its APIC ID) and maps its kvm_run structure.
    public func createVirtualCPU(id: UInt32) throws(KVMError) -> KVMVirtualCPU {
        let raw = try kvmIoctl(fd.rawValue, CKVM_CREATE_VCPU, value: Int32(id), .createVCPU)
        let owned = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
        guard let mapped = system_mmap(raw, length: system.vcpuMmapSize) else {
            throw KVMError(.mapRunStructure, errno: .current)
        }
        return KVMVirtualCPU(fd: owned, id: id, run: mapped, runSize: system.vcpuMmapSize, system: system)
    }
}

/// An MSI: the address (0xFEE00000 | destination APIC ID << 12 for fixed, physical delivery)
/// and the data (the vector).
public struct MSIMessage: Hashable, Sendable {
    public var address: UInt64
    public var data: UInt32

    public init(address: UInt64, data: UInt32) {
        self.address = address
        self.data = data
    }

    /// A fixed, edge-triggered interrupt with `vector` for the local APIC `apicID`, physical
    /// destination mode.
    public static func fixed(vector: UInt8, apicID: UInt32) -> MSIMessage {
        MSIMessage(address: 0xFEE0_0000 | (UInt64(apicID & 0xFF) << 12), data: UInt32(vector))
    }
}

/// The GSI routing table: KVM's default irqchip routes plus the MSI routes added at run time.
struct RoutingTable {
    var hasIRQChip = false
    var routes: [UInt32: Route] = [:]
    /// GSIs 0-23 belong to the PIC/IOAPIC pins.
    static let firstDynamicGSI: UInt32 = 24

    enum Route: Hashable {
        case msi(MSIMessage)
        case ioapic(pin: UInt32)
    }

    mutating func allocate(_ route: Route) -> UInt32 {
        var gsi = Self.firstDynamicGSI
        while routes[gsi] != nil { gsi += 1 }
        routes[gsi] = route
        return gsi
    }

    mutating func remove(_ gsi: UInt32) { routes[gsi] = nil }

    /// The same pin routes KVM installs by default (kvm_setup_default_irq_routing): GSIs 0-15
    /// to the PICs and the IOAPIC, 16-23 to the IOAPIC; then the MSI routes in GSI order.
    var entries: [kvm_irq_routing_entry] {
        var result: [kvm_irq_routing_entry] = []
        if hasIRQChip {
            for gsi in UInt32(0)..<24 {
                if gsi < 16 {
                    var pic = kvm_irq_routing_entry()
                    pic.gsi = gsi
                    pic.type = UInt32(KVM_IRQ_ROUTING_IRQCHIP)
                    pic.u.irqchip.irqchip = gsi < 8 ? UInt32(KVM_IRQCHIP_PIC_MASTER) : UInt32(KVM_IRQCHIP_PIC_SLAVE)
                    pic.u.irqchip.pin = gsi % 8
                    result.append(pic)
                }
                var ioapic = kvm_irq_routing_entry()
                ioapic.gsi = gsi
                ioapic.type = UInt32(KVM_IRQ_ROUTING_IRQCHIP)
                ioapic.u.irqchip.irqchip = UInt32(KVM_IRQCHIP_IOAPIC)
                ioapic.u.irqchip.pin = gsi
                result.append(ioapic)
            }
        }
        for (gsi, route) in routes.sorted(by: { $0.key < $1.key }) {
            var entry = kvm_irq_routing_entry()
            entry.gsi = gsi
            switch route {
            case .msi(let message):
                entry.type = UInt32(KVM_IRQ_ROUTING_MSI)
                entry.u.msi.address_lo = UInt32(truncatingIfNeeded: message.address)
                entry.u.msi.address_hi = UInt32(truncatingIfNeeded: message.address >> 32)
                entry.u.msi.data = message.data
            case .ioapic(let pin):
                entry.type = UInt32(KVM_IRQ_ROUTING_IRQCHIP)
                entry.u.irqchip.irqchip = UInt32(KVM_IRQCHIP_IOAPIC)
                entry.u.irqchip.pin = pin
            }
            result.append(entry)
        }
        return result
    }
}
