import KVM
import LinuxSupport
import SystemPackage
import Testing

@Suite("KVM layer")
struct KVMTests {
    @Test func msiAddressesTheAPICInPhysicalMode() {
        let message = MSIMessage.fixed(vector: 0xF3, apicID: 5)
        #expect(message.address == 0xFEE0_5000)
        #expect(message.data == 0xF3)
    }

    @Test func errorsNameTheRequestAndTheFix() {
        let denied = KVMError(.openDevice, errno: .permissionDenied)
        #expect(denied.description.hasPrefix("KVM open /dev/kvm failed: "))
        #expect(denied.hint?.contains("kvm group") == true)
        #expect(KVMError(.openDevice, errno: .noSuchFileOrDirectory).hint?.contains("load the kvm module") == true)
        #expect(KVMError(.run, errno: .invalidArgument).hint == nil)
    }

    @Test func portAccessValueIsLittleEndian() {
        #expect(PortAccess(port: 0x402, isWrite: true, size: 4, data: [0x78, 0x56, 0x34, 0x12]).value == 0x1234_5678)
        #expect(PortAccess(port: 0x80, isWrite: false, size: 1, data: []).value == 0)
    }

    @Test(.enabled(if: KVMSystem.isUsable, "needs /dev/kvm"))
    func theHostHasWhatTheRootNeedsAndNoInKernelHyperV() throws {
        let system = try KVMSystem()
        for capability in KVMCapability.required { #expect(try system.has(capability)) }
        let supported = try system.supportedCPUID()
        #expect(supported.contains { $0.function == 1 })
    }

    @Test(.enabled(if: KVMSystem.isUsable, "needs /dev/kvm"))
    func routesAndDoorbellsCanBeProgrammed() throws {
        let machine = try KVMSystem().createVirtualMachine()
        try machine.createInterruptController()
        try machine.filterMSRs(0x4000_0000...0x4000_01FF)
        let gsi = try machine.addMSIRoute(.fixed(vector: 0xF3, apicID: 0))
        #expect(gsi >= 24)
        let doorbell = try EventFD()
        try machine.assignIRQFD(doorbell, gsi: gsi)
        try machine.updateMSIRoute(gsi: gsi, .fixed(vector: 0xF4, apicID: 0))
        try machine.deassignIRQFD(doorbell, gsi: gsi)
        let signal = try EventFD()
        try machine.assignIOEventFD(signal, port: 0xE6, value: 0x2001)
        #expect(throws: KVMError.self) { try machine.assignIOEventFD(signal, port: 0xE6, value: 0x2001) }
        try machine.deassignIOEventFD(signal, port: 0xE6, value: 0x2001)
        let second = try machine.addMSIRoute(.fixed(vector: 0xF3, apicID: 1))
        #expect(second != gsi)
    }
}
