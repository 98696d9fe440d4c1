import CKVM
import Glibc
@testable import KVM
import LinuxSupport
import SystemPackage
import Testing

/// The KVM layer against `MockKernel`: which requests it makes with which arguments, how it
/// decodes what the kernel wrote into kvm_run, and how errnos become `KVMError`s. No /dev/kvm.
@Suite("KVM requests (mock kernel)")
struct KVMRequestTests {
    /// Runs `body` with `kernel` answering this task's KVM system calls.
    func with<T>(_ kernel: MockKernel, _ body: () throws -> T) throws -> T {
        try MockKernel.$current.withValue(kernel, operation: body)
    }

    /// The bytes of a recorded ioctl argument as the C structure it was.
    func argument<T: BitwiseCopyable>(_ call: MockKernel.Call, as _: T.Type) throws -> T {
        try #require(call.argument.count >= MemoryLayout<T>.size, "argument of \(call) is \(call.argument.count) bytes")
        return call.argument.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
    }

    func calls(_ kernel: MockKernel, _ request: UInt) -> [MockKernel.Call] {
        kernel.trace.filter { $0.request == request }
    }

    @Test func openingKVMChecksTheAPIVersionTheRunMappingSizeAndEveryRequiredCapability() throws {
        let kernel = MockKernel()
        let system = try with(kernel) { try KVMSystem() }
        let trace = kernel.trace
        #expect(trace.first?.kind == .open(path: "/dev/kvm"))
        #expect(Array(trace.dropFirst().compactMap(\.request).prefix(2)) == [CKVM_GET_API_VERSION, CKVM_GET_VCPU_MMAP_SIZE])
        let checked = calls(kernel, CKVM_CHECK_EXTENSION).map { Int32($0.value) }
        #expect(checked == KVMCapability.required.map(\.rawValue))
        #expect(system.vcpuMmapSize == MockKernel.runMappingSize)
    }

    @Test func aMissingDeviceOrCapabilityIsAKVMErrorNamingTheRequestAndTheFix() throws {
        let missing = MockKernel()
        missing.failOpen(with: .noSuchFileOrDirectory)
        #expect(throws: KVMError(.openDevice, errno: .noSuchFileOrDirectory)) { try with(missing) { try KVMSystem() } }
        #expect(KVMError(.openDevice, errno: .noSuchFileOrDirectory).hint?.contains("load the kvm module") == true)

        let denied = MockKernel()
        denied.failOpen(with: .permissionDenied)
        do {
            _ = try with(denied) { try KVMSystem() }
            Issue.record("opened a /dev/kvm this user may not open")
        } catch let error as KVMError {
            #expect(error.operation == .openDevice && error.errno == .permissionDenied)
            #expect(error.description.contains("kvm group"), "the sentence carries the hint: \(error)")
        }

        let old = MockKernel()
        old.respond(to: CKVM_GET_API_VERSION) { _, _ in .success(11) }
        #expect(throws: KVMError(.unsupportedAPIVersion, errno: .notSupported)) { try with(old) { try KVMSystem() } }

        let noFilter = MockKernel()
        noFilter.respond(to: CKVM_CHECK_EXTENSION) { call, _ in
            .success(Int32(call.value) == KVMCapability.msrFilter.rawValue ? 0 : 1)
        }
        #expect(throws: KVMError(.missingCapability, errno: .notSupported)) { try with(noFilter) { try KVMSystem() } }
        #expect(calls(noFilter, CKVM_CHECK_EXTENSION).last.map { Int32($0.value) } == KVMCapability.msrFilter.rawValue,
                "checking stops at the missing capability")

        let busy = MockKernel()
        busy.fail(CKVM_CREATE_VM, with: .resourceBusy)
        let error = try with(busy) { () throws -> KVMError? in
            let system = try KVMSystem()
            do throws(KVMError) {
                _ = try system.createVirtualMachine()
                return nil
            } catch {
                return error
            }
        }
        #expect(error == KVMError(.createVirtualMachine, errno: .resourceBusy))
        #expect(error?.hint?.contains("Another hypervisor") == true)
    }

    @Test func aVirtualMachineGetsItsInterruptControllerMSRFilterAndMemoryInThisOrder() throws {
        let kernel = MockKernel()
        try with(kernel) {
            let machine = try KVMSystem().createVirtualMachine()
            try machine.createInterruptController()
            try machine.filterMSRs(0x4000_0000...0x4000_01FF)
            try machine.mapMemory(slot: 0, guestAddress: 0, size: 64 << 20, hostAddress: 0x7F00_0000_0000)
        }
        let vmRequests = kernel.trace.drop { $0.request != CKVM_CREATE_VM }.compactMap(\.request)
        #expect(vmRequests == [CKVM_CREATE_VM, CKVM_SET_TSS_ADDR, CKVM_SET_IDENTITY_MAP_ADDR, CKVM_CREATE_IRQCHIP,
                               CKVM_SET_GSI_ROUTING, CKVM_ENABLE_CAP, CKVM_X86_SET_MSR_FILTER, CKVM_SET_USER_MEMORY_REGION])
        let create = try #require(calls(kernel, CKVM_CREATE_VM).first)
        #expect(create.value == 0, "the default machine type")
        let vmFD = try #require(calls(kernel, CKVM_SET_TSS_ADDR).first?.fd)
        #expect(kernel.trace.filter { $0.request != nil && $0.request != CKVM_CREATE_VM }
            .drop { $0.request != CKVM_SET_TSS_ADDR }.allSatisfy { $0.fd == vmFD }, "every VM request goes to the VM's descriptor")

        #expect(calls(kernel, CKVM_SET_TSS_ADDR).first?.value == Int(Int32(bitPattern: 0xFFFB_D000)))
        #expect(try argument(try #require(calls(kernel, CKVM_SET_IDENTITY_MAP_ADDR).first), as: UInt64.self) == 0xFFFB_C000)
        // The default pin routes: 16 PIC and 24 IOAPIC entries.
        let routing = try #require(calls(kernel, CKVM_SET_GSI_ROUTING).first)
        #expect(try argument(routing, as: UInt32.self) == 40, "kvm_irq_routing.nr")

        let capability = try argument(try #require(calls(kernel, CKVM_ENABLE_CAP).first), as: kvm_enable_cap.self)
        #expect(capability.cap == UInt32(KVM_CAP_X86_USER_SPACE_MSR))
        #expect(capability.args.0 == UInt64(KVM_MSR_EXIT_REASON_FILTER | KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_INVAL))
        let filter = try argument(try #require(calls(kernel, CKVM_X86_SET_MSR_FILTER).first), as: kvm_msr_filter.self)
        #expect(filter.flags == UInt32(KVM_MSR_FILTER_DEFAULT_ALLOW))
        #expect(filter.ranges.0.base == 0x4000_0000 && filter.ranges.0.nmsrs == 512)
        #expect(filter.ranges.0.flags == UInt32(KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE))
        #expect(filter.ranges.1.nmsrs == 0, "one range only")

        let region = try argument(try #require(calls(kernel, CKVM_SET_USER_MEMORY_REGION).first),
                                  as: kvm_userspace_memory_region.self)
        #expect(region.slot == 0 && region.flags == 0)
        #expect(region.guest_phys_addr == 0 && region.memory_size == 64 << 20 && region.userspace_addr == 0x7F00_0000_0000)
    }

    @Test func interruptedRequestsAreRetriedAndOtherErrnosThrowWithTheirRequest() throws {
        let kernel = MockKernel()
        kernel.fail(CKVM_SET_USER_MEMORY_REGION, with: .interrupted, .interrupted)
        kernel.fail(CKVM_CREATE_VCPU, with: .interrupted)
        let failure = try with(kernel) { () throws -> KVMError? in
            let machine = try KVMSystem().createVirtualMachine()
            try machine.mapMemory(slot: 1, guestAddress: 0x10_0000, size: 4096, hostAddress: 0x1000)
            _ = try machine.createVirtualCPU(id: 0)
            kernel.fail(CKVM_SET_USER_MEMORY_REGION, with: .invalidArgument)
            do throws(KVMError) {
                try machine.mapMemory(slot: 2, guestAddress: 0, size: 4096, hostAddress: 0x2000)
                return nil
            } catch {
                return error
            }
        }
        let regions = calls(kernel, CKVM_SET_USER_MEMORY_REGION)
        #expect(regions.count == 4, "two EINTRs, the success, then the EINVAL")
        #expect(Set(regions.prefix(3).map(\.argument)).count == 1, "each retry passes the same region")
        #expect(calls(kernel, CKVM_CREATE_VCPU).count == 2)
        #expect(failure == KVMError(.setUserMemoryRegion, errno: .invalidArgument))
        #expect(failure?.description.hasPrefix("KVM KVM_SET_USER_MEMORY_REGION failed: ") == true)
        #expect(failure?.hint == nil)
    }

    @Test func aVirtualCPUIsCreatedWithItsIDAndItsRunStructureMappedAndUnmapped() throws {
        let kernel = MockKernel()
        let descriptor = try with(kernel) { () throws -> Int32 in
            let machine = try KVMSystem().createVirtualMachine()
            let cpu = try machine.createVirtualCPU(id: 3)
            #expect(cpu.id == 3)
            #expect(calls(kernel, CKVM_CREATE_VCPU).first?.value == 3)
            let mapping = try #require(kernel.trace.last)
            #expect(mapping.kind == .mmap(length: MockKernel.runMappingSize) && mapping.fd == cpu.descriptor)
            return cpu.descriptor
        }
        #expect(kernel.trace.last?.kind == .munmap(length: MockKernel.runMappingSize), "a released vCPU unmaps kvm_run")
        #expect(kernel.runPage(of: descriptor) == nil)

        let noMemory = MockKernel()
        noMemory.failMmap(length: MockKernel.runMappingSize, with: .noMemory)
        #expect(throws: KVMError(.mapRunStructure, errno: .noMemory)) {
            try with(noMemory) { _ = try KVMSystem().createVirtualMachine().createVirtualCPU(id: 0) }
        }
    }

    /// One exit as the kernel writes it into kvm_run, and what `run()` must make of it.
    struct SyntheticExit: Sendable {
        var name: String
        var write: @Sendable (UnsafeMutablePointer<kvm_run>) -> Void
        var expected: VirtualCPUExit
    }

    static let exits: [SyntheticExit] = [
        SyntheticExit(name: "OUT dword", write: { run in
            run.pointee.exit_reason = UInt32(KVM_EXIT_IO)
            run.pointee.io.direction = UInt8(KVM_EXIT_IO_OUT)
            run.pointee.io.size = 4
            run.pointee.io.port = 0xE2
            run.pointee.io.count = 1
            run.pointee.io.data_offset = 4096
            (UnsafeMutableRawPointer(run) + 4096).copyMemory(from: [0x78, 0x56, 0x34, 0x12] as [UInt8], byteCount: 4)
        }, expected: .portIO(PortAccess(port: 0xE2, isWrite: true, size: 4, count: 1, data: [0x78, 0x56, 0x34, 0x12]))),
        SyntheticExit(name: "IN byte", write: { run in
            run.pointee.exit_reason = UInt32(KVM_EXIT_IO)
            run.pointee.io.direction = UInt8(KVM_EXIT_IO_IN)
            run.pointee.io.size = 1
            run.pointee.io.port = 0x3FD
            run.pointee.io.count = 1
            run.pointee.io.data_offset = 4096
        }, expected: .portIO(PortAccess(port: 0x3FD, isWrite: false, size: 1, count: 1, data: []))),
        SyntheticExit(name: "OUT whose data lies outside the mapping", write: { run in
            run.pointee.exit_reason = UInt32(KVM_EXIT_IO)
            run.pointee.io.direction = UInt8(KVM_EXIT_IO_OUT)
            run.pointee.io.size = 4
            run.pointee.io.port = 0x80
            run.pointee.io.count = 2
            run.pointee.io.data_offset = UInt64(MockKernel.runMappingSize - 4)
        }, expected: .portIO(PortAccess(port: 0x80, isWrite: true, size: 4, count: 2, data: []))),
        SyntheticExit(name: "MMIO write", write: { run in
            run.pointee.exit_reason = UInt32(KVM_EXIT_MMIO)
            run.pointee.mmio.phys_addr = 0xFEC0_0010
            run.pointee.mmio.len = 4
            run.pointee.mmio.is_write = 1
            run.pointee.mmio.data = (1, 2, 3, 4, 5, 6, 7, 8)
        }, expected: .mmio(MMIOAccess(address: 0xFEC0_0010, isWrite: true, length: 4, data: [1, 2, 3, 4]))),
        SyntheticExit(name: "RDMSR", write: { run in
            run.pointee.exit_reason = UInt32(KVM_EXIT_X86_RDMSR)
            run.pointee.msr.index = 0x4000_0093
        }, expected: .readMSR(index: 0x4000_0093)),
        SyntheticExit(name: "WRMSR", write: { run in
            run.pointee.exit_reason = UInt32(KVM_EXIT_X86_WRMSR)
            run.pointee.msr.index = 0x4000_0001
            run.pointee.msr.data = 0x1_2345_6001
        }, expected: .writeMSR(index: 0x4000_0001, value: 0x1_2345_6001)),
        SyntheticExit(name: "HLT", write: { $0.pointee.exit_reason = UInt32(KVM_EXIT_HLT) }, expected: .halt),
        SyntheticExit(name: "triple fault", write: { $0.pointee.exit_reason = UInt32(KVM_EXIT_SHUTDOWN) }, expected: .shutdown),
        SyntheticExit(name: "failed entry", write: { run in
            run.pointee.exit_reason = UInt32(KVM_EXIT_FAIL_ENTRY)
            run.pointee.fail_entry.hardware_entry_failure_reason = 0x8000_0021
        }, expected: .failedEntry(reason: 0x8000_0021)),
        SyntheticExit(name: "internal error", write: { run in
            run.pointee.exit_reason = UInt32(KVM_EXIT_INTERNAL_ERROR)
            run.pointee.internal.suberror = UInt32(KVM_INTERNAL_ERROR_EMULATION)
        }, expected: .internalError(suberror: UInt32(KVM_INTERNAL_ERROR_EMULATION))),
        SyntheticExit(name: "system event", write: { run in
            run.pointee.exit_reason = UInt32(KVM_EXIT_SYSTEM_EVENT)
            run.pointee.system_event.type = UInt32(KVM_SYSTEM_EVENT_RESET)
        }, expected: .systemEvent(type: UInt32(KVM_SYSTEM_EVENT_RESET))),
        SyntheticExit(name: "interrupt window", write: { $0.pointee.exit_reason = UInt32(KVM_EXIT_IRQ_WINDOW_OPEN) },
                      expected: .interrupted),
        SyntheticExit(name: "signal", write: { $0.pointee.exit_reason = UInt32(KVM_EXIT_INTR) }, expected: .interrupted),
        SyntheticExit(name: "unknown reason", write: { $0.pointee.exit_reason = 0xDEAD }, expected: .unknown(reason: 0xDEAD)),
    ]

    @Test func runDecodesTheExitTheKernelWroteIntoKVMRun() throws {
        for exit in Self.exits {
            let kernel = MockKernel()
            kernel.respond(to: CKVM_RUN) { call, _ in
                guard let run = kernel.runPage(of: call.fd) else { return .failure(.badFileDescriptor) }
                UnsafeMutableRawPointer(run).initializeMemory(as: UInt8.self, repeating: 0, count: MockKernel.runMappingSize)
                exit.write(run)
                return .success(0)
            }
            let decoded = try with(kernel) { try KVMSystem().createVirtualMachine().createVirtualCPU(id: 0).run() }
            #expect(decoded == exit.expected, "\(exit.name)")
        }
    }

    @Test func completionsAreWrittenWhereTheKernelReadsThem() throws {
        let kernel = MockKernel()
        try with(kernel) {
            let cpu = try KVMSystem().createVirtualMachine().createVirtualCPU(id: 0)
            let run = try #require(kernel.runPage(of: cpu.descriptor))
            run.pointee.exit_reason = UInt32(KVM_EXIT_IO)
            run.pointee.io.direction = UInt8(KVM_EXIT_IO_IN)
            run.pointee.io.size = 2
            run.pointee.io.count = 1
            run.pointee.io.data_offset = 4096
            cpu.completePortRead([0x34, 0x12, 0xFF])
            let raw = UnsafeRawPointer(run)
            #expect(raw.load(fromByteOffset: 4096, as: UInt16.self) == 0x1234)
            #expect(raw.load(fromByteOffset: 4098, as: UInt8.self) == 0, "only size × count bytes are written")

            run.pointee.io.data_offset = UInt64(MockKernel.runMappingSize - 1)
            cpu.completePortRead([0xAA, 0xBB])  // would write past the mapping: ignored
            #expect(raw.load(fromByteOffset: MockKernel.runMappingSize - 1, as: UInt8.self) == 0)

            cpu.completeMSRRead(nil)
            #expect(run.pointee.msr.error == 1, "an unknown MSR raises #GP")
            cpu.completeMSRRead(0xABCD)
            #expect(run.pointee.msr.error == 0 && run.pointee.msr.data == 0xABCD)
            cpu.completeMSRWrite(accepted: false)
            #expect(run.pointee.msr.error == 1)
        }
    }

    @Test func anInterruptedRunReturnsInterruptedOnceAndClearsImmediateExit() throws {
        for errno in [Errno.interrupted, .resourceTemporarilyUnavailable] {
            let kernel = MockKernel()
            kernel.fail(CKVM_RUN, with: errno)
            try with(kernel) {
                let cpu = try KVMSystem().createVirtualMachine().createVirtualCPU(id: 0)
                cpu.requestExit()
                let run = try #require(kernel.runPage(of: cpu.descriptor))
                #expect(run.pointee.immediate_exit == 1)
                #expect(try cpu.run() == .interrupted)
                #expect(run.pointee.immediate_exit == 0, "the next run enters the guest")
            }
            #expect(calls(kernel, CKVM_RUN).count == 1, "KVM_RUN is not retried: the caller must see the pause request")
        }
        let faulted = MockKernel()
        faulted.fail(CKVM_RUN, with: .badAddress)
        #expect(throws: KVMError(.run, errno: .badAddress)) {
            try with(faulted) { _ = try KVMSystem().createVirtualMachine().createVirtualCPU(id: 0).run() }
        }
    }

    @Test func anEventConnectionIsAnIOEventFDMatchingItsIDOnTheSignalPort() throws {
        let kernel = MockKernel()
        let event = try EventFD()
        try with(kernel) {
            let machine = try KVMSystem().createVirtualMachine()
            try machine.assignIOEventFD(event, port: 0xE6, value: 0x2001)
            try machine.deassignIOEventFD(event, port: 0xE6, value: 0x2001)
        }
        let requests = try calls(kernel, CKVM_IOEVENTFD).map { try argument($0, as: kvm_ioeventfd.self) }
        try #require(requests.count == 2)
        for request in requests {
            #expect(request.addr == 0xE6 && request.len == 4 && request.datamatch == 0x2001 && request.fd == event.rawValue)
        }
        #expect(requests[0].flags == CKVM_IOEVENTFD_FLAG_PIO | CKVM_IOEVENTFD_FLAG_DATAMATCH)
        #expect(requests[1].flags == CKVM_IOEVENTFD_FLAG_PIO | CKVM_IOEVENTFD_FLAG_DATAMATCH | CKVM_IOEVENTFD_FLAG_DEASSIGN)
    }

    @Test func msrAccessesCheckHowManyEntriesTheKernelProcessed() throws {
        let kernel = MockKernel()
        kernel.respond(to: CKVM_GET_MSRS) { _, pointer in
            guard let pointer else { return .failure(.badAddress) }
            let count = pointer.load(as: kvm_msrs.self).nmsrs
            for entry in 0..<Int(count) {
                let offset = MemoryLayout<kvm_msrs>.size + entry * MemoryLayout<kvm_msr_entry>.stride
                var item = pointer.load(fromByteOffset: offset, as: kvm_msr_entry.self)
                item.data = UInt64(item.index) * 2
                pointer.storeBytes(of: item, toByteOffset: offset, as: kvm_msr_entry.self)
            }
            return .success(Int32(count))
        }
        kernel.respond(to: CKVM_SET_MSRS) { _, _ in .success(1) }
        try with(kernel) {
            let cpu = try KVMSystem().createVirtualMachine().createVirtualCPU(id: 0)
            #expect(try cpu.readMSR(0x10) == 0x20)
            #expect(throws: KVMError(.setMSRs, errno: .invalidArgument), "the kernel stopped at the first of two") {
                try cpu.setMSRs([(index: 0x10, value: 1), (index: 0x11, value: 2)])
            }
        }
    }

    @Test func theSupportedCPUIDBufferGrowsUntilTheKernelFitsItsLeavesIn() throws {
        let kernel = MockKernel()
        kernel.respond(to: CKVM_GET_SUPPORTED_CPUID) { _, pointer in
            guard let pointer else { return .failure(.badAddress) }
            let header = pointer.assumingMemoryBound(to: kvm_cpuid2.self)
            guard header.pointee.nent >= 300 else { return .failure(.argListTooLong) }
            var leaf = kvm_cpuid_entry2()
            leaf.function = 0x4000_0000
            leaf.eax = 0x4000_0001
            pointer.storeBytes(of: leaf, toByteOffset: MemoryLayout<kvm_cpuid2>.size, as: kvm_cpuid_entry2.self)
            header.pointee.nent = 1
            return .success(0)
        }
        let leaves = try with(kernel) { try KVMSystem().supportedCPUID() }
        #expect(leaves == [CPUIDEntry(function: 0x4000_0000, eax: 0x4000_0001)])
        // kvm_cpuid2.nent: the capacity offered.
        let capacities = try calls(kernel, CKVM_GET_SUPPORTED_CPUID).map { try argument($0, as: UInt32.self) }
        #expect(capacities == [128, 256, 512])
    }
}
