import CKVM
import Glibc
import LinuxSupport
import SystemPackage

/// One virtual CPU: its fd and its mmapped kvm_run structure.
///
/// A virtual CPU is driven by exactly one thread (the one that calls `run()`); any thread may
/// call `requestExit()`.
public final class KVMVirtualCPU: @unchecked Sendable {
    // SAFETY: `runArea` points at this vCPU's kvm_run mapping, alive until deinit. Only the thread
    // that calls `run()` reads or writes it, except `requestExit`, which stores one byte
    // (immediate_exit) that KVM reads on entry to KVM_RUN.
    private let fd: OwnedDescriptor
    var descriptor: Int32 { fd.rawValue }
    private let runArea: UnsafeMutableRawPointer
    private let runSize: Int
    private let system: KVMSystem
    /// The vCPU id, which is also its initial APIC ID.
    public let id: UInt32

    init(fd: OwnedDescriptor, id: UInt32, run: UnsafeMutableRawPointer, runSize: Int, system: KVMSystem) {
        self.fd = fd
        self.id = id
        self.runArea = run
        self.runSize = runSize
        self.system = system
    }

    deinit {
        system_munmap(runArea, length: runSize)
    }

    private var state: UnsafeMutablePointer<kvm_run> { runArea.assumingMemoryBound(to: kvm_run.self) }

    // MARK: Running

    /// Enters the guest until the next exit that needs user space.
    public func run() throws(KVMError) -> VirtualCPUExit {
        let result = system_ioctl(fd.rawValue, CKVM_RUN, value: 0)
        if result < 0 {
            let error = Errno.current
            if error == .interrupted || error == .resourceTemporarilyUnavailable {
                state.pointee.immediate_exit = 0
                return .interrupted
            }
            throw KVMError(.run, errno: error)
        }
        return decodeExit()
    }

    /// Makes the current or next `run()` return `.interrupted` promptly. The caller must also
    /// interrupt the running thread (`OSThread.interrupt()`) if it may be inside KVM_RUN.
    public func requestExit() {
        state.pointee.immediate_exit = 1
    }

    func decodeExit() -> VirtualCPUExit {
        let exit = state.pointee
        switch Int32(exit.exit_reason) {
        case KVM_EXIT_IO:
            let io = exit.io
            let size = Int(io.size)
            let total = size * Int(io.count)
            let offset = Int(io.data_offset)
            var bytes: [UInt8] = []
            if io.direction == UInt8(KVM_EXIT_IO_OUT), offset >= 0, total <= 4096, offset + total <= runSize {
                bytes = [UInt8](UnsafeRawBufferPointer(start: runArea + offset, count: total))
            }
            return .portIO(PortAccess(port: io.port, isWrite: io.direction == UInt8(KVM_EXIT_IO_OUT),
                                      size: size, count: Int(io.count), data: bytes))
        case KVM_EXIT_MMIO:
            let mmio = exit.mmio
            let length = Int(min(mmio.len, 8))
            let data = withUnsafeBytes(of: mmio.data) { [UInt8]($0.prefix(length)) }
            return .mmio(MMIOAccess(address: mmio.phys_addr, isWrite: mmio.is_write != 0, length: length, data: data))
        case KVM_EXIT_X86_RDMSR:
            return .readMSR(index: exit.msr.index)
        case KVM_EXIT_X86_WRMSR:
            return .writeMSR(index: exit.msr.index, value: exit.msr.data)
        case KVM_EXIT_HLT:
            return .halt
        case KVM_EXIT_SHUTDOWN:
            return .shutdown
        case KVM_EXIT_FAIL_ENTRY:
            return .failedEntry(reason: exit.fail_entry.hardware_entry_failure_reason)
        case KVM_EXIT_INTERNAL_ERROR:
            return .internalError(suberror: exit.internal.suberror)
        case KVM_EXIT_SYSTEM_EVENT:
            return .systemEvent(type: exit.system_event.type)
        case KVM_EXIT_IRQ_WINDOW_OPEN, KVM_EXIT_INTR:
            return .interrupted
        default:
            return .unknown(reason: exit.exit_reason)
        }
    }

    /// Supplies the bytes an IN instruction reads; call before the next `run()`.
    public func completePortRead(_ bytes: [UInt8]) {
        let io = state.pointee.io
        let offset = Int(io.data_offset)
        let count = min(bytes.count, Int(io.size) * Int(io.count))
        guard offset >= 0, offset + count <= runSize else { return }
        bytes.withUnsafeBytes { source in
            // SAFETY: the destination lies inside the kvm_run mapping (checked above).
            (runArea + offset).copyMemory(from: source.baseAddress!, byteCount: count)
        }
    }

    /// Supplies the bytes an MMIO read returns; call before the next `run()`.
    public func completeMMIORead(_ bytes: [UInt8]) {
        withUnsafeMutableBytes(of: &state.pointee.mmio.data) { destination in
            destination.copyBytes(from: bytes.prefix(destination.count))
        }
    }

    /// Completes an RDMSR exit with `value`, or with a #GP fault when `value` is nil.
    public func completeMSRRead(_ value: UInt64?) {
        state.pointee.msr.data = value ?? 0
        state.pointee.msr.error = value == nil ? 1 : 0
    }

    /// Completes a WRMSR exit, raising #GP in the guest if `accepted` is false.
    public func completeMSRWrite(accepted: Bool) {
        state.pointee.msr.error = accepted ? 0 : 1
    }

    // MARK: State

    /// Reads the general-purpose registers.
    public func registers() throws(KVMError) -> GeneralRegisters {
        var raw = kvm_regs()
        _ = try kvmIoctl(fd.rawValue, CKVM_GET_REGS, &raw, .getRegisters)
        return GeneralRegisters(raw)
    }

    /// Writes the general-purpose registers.
    public func setRegisters(_ registers: GeneralRegisters) throws(KVMError) {
        var raw = registers.raw
        _ = try kvmIoctl(fd.rawValue, CKVM_SET_REGS, &raw, .setRegisters)
    }

    /// Puts the CPU in 64-bit mode with paging, flat segments and `state`'s GDT and page tables.
    public func enterLongMode(_ entry: LongModeEntryState) throws(KVMError) {
        var sregs = kvm_sregs()
        _ = try kvmIoctl(fd.rawValue, CKVM_GET_SREGS, &sregs, .getSpecialRegisters)
        entry.code.apply(to: &sregs.cs)
        for keyPath in [\kvm_sregs.ds, \kvm_sregs.es, \kvm_sregs.fs, \kvm_sregs.gs, \kvm_sregs.ss] {
            entry.data.apply(to: &sregs[keyPath: keyPath])
        }
        sregs.gdt.base = entry.gdtBase
        sregs.gdt.limit = entry.gdtLimit
        sregs.cr0 = LongModeEntryState.cr0
        sregs.cr3 = entry.cr3
        sregs.cr4 = LongModeEntryState.cr4
        sregs.efer = LongModeEntryState.efer
        _ = try kvmIoctl(fd.rawValue, CKVM_SET_SREGS, &sregs, .setSpecialRegisters)
    }

    /// Sets the CPUID leaves the guest sees.
    public func setCPUID(_ entries: [CPUIDEntry]) throws(KVMError) {
        var buffer = CPUIDBuffer(entries: entries)
        _ = try kvmIoctl(fd.rawValue, CKVM_SET_CPUID2, buffer.pointer, .setCPUID)
    }

    /// The guest TSC frequency in kHz.
    public func tscFrequencyKHz() throws(KVMError) -> UInt64 {
        UInt64(try kvmIoctl(fd.rawValue, CKVM_GET_TSC_KHZ, nil, .getTSCFrequency))
    }

    /// Marks the CPU runnable (for application processors started directly in long mode
    /// rather than by INIT/SIPI).
    public func makeRunnable() throws(KVMError) {
        var state = kvm_mp_state()
        state.mp_state = UInt32(KVM_MP_STATE_RUNNABLE)
        _ = try kvmIoctl(fd.rawValue, CKVM_SET_MP_STATE, &state, .setMPState)
    }

    /// Writes architectural MSRs (KVM_SET_MSRS).
    public func setMSRs(_ values: [(index: UInt32, value: UInt64)]) throws(KVMError) {
        let headerSize = MemoryLayout<kvm_msrs>.size
        let stride = MemoryLayout<kvm_msr_entry>.stride
        var storage = [UInt64](repeating: 0, count: (headerSize + values.count * stride + 7) / 8)
        try withMutableBytes(of: &storage) { bytes throws(KVMError) in
            // SAFETY: header plus `values.count` entries fit in the 8-byte-aligned buffer.
            bytes.baseAddress!.assumingMemoryBound(to: kvm_msrs.self).pointee.nmsrs = UInt32(values.count)
            for (offset, item) in values.enumerated() {
                var entry = kvm_msr_entry()
                entry.index = item.index
                entry.data = item.value
                bytes.baseAddress!.storeBytes(of: entry, toByteOffset: headerSize + offset * stride, as: kvm_msr_entry.self)
            }
            let written = try kvmIoctl(fd.rawValue, CKVM_SET_MSRS, bytes.baseAddress, .setMSRs)
            if written != Int32(values.count) { throw KVMError(.setMSRs, errno: .invalidArgument) }
        }
    }
}

/// Why a virtual CPU stopped running guest code.
public enum VirtualCPUExit: Hashable, Sendable {
    /// An IN or OUT the kernel did not handle.
    case portIO(PortAccess)
    /// A load or store to a guest physical address with no memory behind it.
    case mmio(MMIOAccess)
    /// RDMSR of a filtered or unknown MSR; complete with `completeMSRRead`.
    case readMSR(index: UInt32)
    /// WRMSR of a filtered or unknown MSR; complete with `completeMSRWrite`.
    case writeMSR(index: UInt32, value: UInt64)
    /// HLT with no in-kernel interrupt controller to wait on.
    case halt
    /// The guest triple-faulted (or otherwise requested a reset).
    case shutdown
    /// The CPU could not enter the guest (hardware entry failure reason).
    case failedEntry(reason: UInt64)
    /// KVM could not emulate something.
    case internalError(suberror: UInt32)
    /// A system event such as a reset or shutdown request.
    case systemEvent(type: UInt32)
    /// `requestExit()` or a signal interrupted the run.
    case interrupted
    /// An exit reason this package does not decode, kept as data.
    case unknown(reason: UInt32)
}

/// A port I/O access.
public struct PortAccess: Hashable, Sendable {
    public var port: UInt16
    public var isWrite: Bool
    /// Bytes per access: 1, 2 or 4.
    public var size: Int
    /// Repetitions (string I/O).
    public var count: Int
    /// The bytes written, for OUT; empty for IN.
    public var data: [UInt8]

    public init(port: UInt16, isWrite: Bool, size: Int, count: Int = 1, data: [UInt8]) {
        self.port = port
        self.isWrite = isWrite
        self.size = size
        self.count = count
        self.data = data
    }

    /// The first value written, little-endian (0 for reads).
    public var value: UInt32 {
        var result: UInt32 = 0
        for (index, byte) in data.prefix(4).enumerated() { result |= UInt32(byte) << (8 * index) }
        return result
    }
}

/// An MMIO access.
public struct MMIOAccess: Hashable, Sendable {
    public var address: UInt64
    public var isWrite: Bool
    public var length: Int
    public var data: [UInt8]
}

extension KVMVirtualCPU {
    /// Reads architectural MSR `index` (KVM_GET_MSRS), e.g. IA32_TSC (0x10).
    public func readMSR(_ index: UInt32) throws(KVMError) -> UInt64 {
        try readMSRs([index])[0]
    }

    private func readMSRs(_ indices: [UInt32]) throws(KVMError) -> [UInt64] {
        let headerSize = MemoryLayout<kvm_msrs>.size
        let stride = MemoryLayout<kvm_msr_entry>.stride
        var storage = [UInt64](repeating: 0, count: (headerSize + indices.count * stride + 7) / 8)
        return try withMutableBytes(of: &storage) { bytes throws(KVMError) in
            // SAFETY: header plus `indices.count` entries fit in the 8-byte-aligned buffer.
            bytes.baseAddress!.assumingMemoryBound(to: kvm_msrs.self).pointee.nmsrs = UInt32(indices.count)
            for (offset, index) in indices.enumerated() {
                var entry = kvm_msr_entry()
                entry.index = index
                bytes.baseAddress!.storeBytes(of: entry, toByteOffset: headerSize + offset * stride, as: kvm_msr_entry.self)
            }
            let read = try kvmIoctl(descriptor, CKVM_GET_MSRS, bytes.baseAddress, .getMSRs)
            guard read == Int32(indices.count) else { throw KVMError(.getMSRs, errno: .invalidArgument) }
            return indices.indices.map { offset in
                bytes.baseAddress!.load(fromByteOffset: headerSize + offset * stride, as: kvm_msr_entry.self).data
            }
        }
    }
}
