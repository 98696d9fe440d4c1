import CKVM
import Glibc
import LinuxSupport
import SystemPackage

/// An open /dev/kvm: capabilities, the supported CPUID set, and the factory for virtual machines.
public final class KVMSystem: Sendable {
    let device: OwnedDescriptor
    /// The size of each vCPU's kvm_run mapping.
    public let vcpuMmapSize: Int

    /// The path of the KVM device.
    public static let devicePath = "/dev/kvm"

    /// Whether /dev/kvm exists and this process may open it.
    public static var isUsable: Bool {
        access(devicePath, R_OK | W_OK) == 0
    }

    /// Opens /dev/kvm and checks the API version and the capabilities this hypervisor needs.
    public init() throws(KVMError) {
        let raw = system_open(Self.devicePath, O_RDWR | O_CLOEXEC)
        guard raw >= 0 else { throw KVMError(.openDevice, errno: .current) }
        device = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
        let version = try kvmIoctl(raw, CKVM_GET_API_VERSION, nil, .getAPIVersion)
        guard version == KVM_API_VERSION else { throw KVMError(.unsupportedAPIVersion, errno: .notSupported) }
        vcpuMmapSize = Int(try kvmIoctl(raw, CKVM_GET_VCPU_MMAP_SIZE, nil, .getVCPUMmapSize))
        for capability in KVMCapability.required where try !has(capability) {
            throw KVMError(.missingCapability, errno: .notSupported)
        }
    }

    /// Whether the kernel supports `capability`.
    public func has(_ capability: KVMCapability) throws(KVMError) -> Bool {
        try extensionValue(capability) > 0
    }

    /// KVM_CHECK_EXTENSION's value for `capability` (0 when absent).
    public func extensionValue(_ capability: KVMCapability) throws(KVMError) -> Int32 {
        try kvmIoctl(device.rawValue, CKVM_CHECK_EXTENSION, value: capability.rawValue, .checkExtension)
    }

    /// The CPUID leaves KVM can virtualize on this host (KVM_GET_SUPPORTED_CPUID).
    public func supportedCPUID() throws(KVMError) -> [CPUIDEntry] {
        var capacity = 128
        while true {
            var buffer = CPUIDBuffer(capacity: capacity)
            do throws(KVMError) {
                _ = try kvmIoctl(device.rawValue, CKVM_GET_SUPPORTED_CPUID, buffer.pointer, .getSupportedCPUID)
                return buffer.entries
            } catch where error.errno == .argListTooLong && capacity < 4096 {
                capacity *= 2
            }
        }
    }

    /// Creates an empty virtual machine.
    public func createVirtualMachine() throws(KVMError) -> KVMVirtualMachine {
        let raw = try kvmIoctl(device.rawValue, CKVM_CREATE_VM, value: 0, .createVirtualMachine)
        return KVMVirtualMachine(fd: OwnedDescriptor(adopting: FileDescriptor(rawValue: raw)), system: self)
    }
}

/// KVM capabilities this package checks for (KVM_CAP_*).
public struct KVMCapability: RawRepresentable, Hashable, Sendable {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let irqchip = KVMCapability(rawValue: KVM_CAP_IRQCHIP)
    public static let irqRouting = KVMCapability(rawValue: KVM_CAP_IRQ_ROUTING)
    public static let signalMSI = KVMCapability(rawValue: KVM_CAP_SIGNAL_MSI)
    public static let irqfd = KVMCapability(rawValue: KVM_CAP_IRQFD)
    public static let ioeventfd = KVMCapability(rawValue: KVM_CAP_IOEVENTFD)
    public static let userSpaceMSR = KVMCapability(rawValue: KVM_CAP_X86_USER_SPACE_MSR)
    public static let msrFilter = KVMCapability(rawValue: KVM_CAP_X86_MSR_FILTER)
    public static let immediateExit = KVMCapability(rawValue: KVM_CAP_IMMEDIATE_EXIT)
    public static let x2APICAPI = KVMCapability(rawValue: KVM_CAP_X2APIC_API)
    public static let syncRegisters = KVMCapability(rawValue: KVM_CAP_SYNC_REGS)
    public static let getTSCFrequency = KVMCapability(rawValue: KVM_CAP_GET_TSC_KHZ)
    /// Any in-kernel Hyper-V support; this hypervisor never relies on it.
    public static let hyperV = KVMCapability(rawValue: KVM_CAP_HYPERV)

    /// What the root cannot work without: the in-kernel irqchip with MSI routes and irqfds for
    /// SINT delivery, ioeventfds for HvSignalEvent, MSR exits for the synthetic MSRs, and
    /// immediate exit for pausing virtual processors.
    public static let required: [KVMCapability] = [
        .irqchip, .irqRouting, .signalMSI, .irqfd, .ioeventfd, .userSpaceMSR, .msrFilter, .immediateExit,
    ]
}
