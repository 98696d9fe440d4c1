import SystemPackage

/// A KVM operation that failed, with the errno it failed with.
public struct KVMError: Error, Equatable, CustomStringConvertible {
    /// Which KVM request failed.
    public var operation: KVMOperation
    /// The errno.
    public var errno: Errno

    public init(_ operation: KVMOperation, errno: Errno) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String {
        var text = "KVM \(operation.rawValue) failed: \(errno) (errno \(errno.rawValue))"
        if let hint { text += ". \(hint)" }
        return text
    }

    /// What an operator can do about it, where that is knowable.
    public var hint: String? {
        switch (operation, errno) {
        case (.openDevice, .noSuchFileOrDirectory):
            "There is no /dev/kvm: load the kvm module (or kvm_pvm) or run on a host that provides KVM."
        case (.openDevice, .permissionDenied), (.openDevice, .notPermitted):
            "This user cannot open /dev/kvm: add it to the kvm group or run as root."
        case (.createVirtualMachine, .resourceBusy):
            "Another hypervisor holds the virtualization extensions of this CPU."
        default:
            nil
        }
    }
}

/// The KVM requests this module makes, named after their ioctls.
public enum KVMOperation: String, Sendable {
    case openDevice = "open /dev/kvm"
    case getAPIVersion = "KVM_GET_API_VERSION"
    case checkExtension = "KVM_CHECK_EXTENSION"
    case getVCPUMmapSize = "KVM_GET_VCPU_MMAP_SIZE"
    case getSupportedCPUID = "KVM_GET_SUPPORTED_CPUID"
    case createVirtualMachine = "KVM_CREATE_VM"
    case setTSSAddress = "KVM_SET_TSS_ADDR"
    case setIdentityMapAddress = "KVM_SET_IDENTITY_MAP_ADDR"
    case createIRQChip = "KVM_CREATE_IRQCHIP"
    case createPIT = "KVM_CREATE_PIT2"
    case enableCapability = "KVM_ENABLE_CAP"
    case setMSRFilter = "KVM_X86_SET_MSR_FILTER"
    case setUserMemoryRegion = "KVM_SET_USER_MEMORY_REGION"
    case setGSIRouting = "KVM_SET_GSI_ROUTING"
    case irqfd = "KVM_IRQFD"
    case ioeventfd = "KVM_IOEVENTFD"
    case signalMSI = "KVM_SIGNAL_MSI"
    case irqLine = "KVM_IRQ_LINE"
    case createVCPU = "KVM_CREATE_VCPU"
    case mapRunStructure = "mmap kvm_run"
    case run = "KVM_RUN"
    case getRegisters = "KVM_GET_REGS"
    case setRegisters = "KVM_SET_REGS"
    case getSpecialRegisters = "KVM_GET_SREGS"
    case setSpecialRegisters = "KVM_SET_SREGS"
    case setCPUID = "KVM_SET_CPUID2"
    case getTSCFrequency = "KVM_GET_TSC_KHZ"
    case setMPState = "KVM_SET_MP_STATE"
    case setMSRs = "KVM_SET_MSRS"
    case getMSRs = "KVM_GET_MSRS"
    case unsupportedAPIVersion = "API version check"
    case missingCapability = "capability check"
}
