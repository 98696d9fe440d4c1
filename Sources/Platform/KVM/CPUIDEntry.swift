import CKVM

/// One CPUID leaf/subleaf and its register values (struct kvm_cpuid_entry2).
public struct CPUIDEntry: Hashable, Sendable {
    public var function: UInt32
    public var index: UInt32
    /// KVM_CPUID_FLAG_SIGNIFCANT_INDEX when `index` selects a subleaf.
    public var flags: UInt32
    public var eax: UInt32
    public var ebx: UInt32
    public var ecx: UInt32
    public var edx: UInt32

    public init(function: UInt32, index: UInt32 = 0, flags: UInt32 = 0,
                eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) {
        self.function = function
        self.index = index
        self.flags = flags
        self.eax = eax
        self.ebx = ebx
        self.ecx = ecx
        self.edx = edx
    }

    init(_ raw: kvm_cpuid_entry2) {
        self.init(function: raw.function, index: raw.index, flags: raw.flags,
                  eax: raw.eax, ebx: raw.ebx, ecx: raw.ecx, edx: raw.edx)
    }

    var raw: kvm_cpuid_entry2 {
        var entry = kvm_cpuid_entry2()
        entry.function = function
        entry.index = index
        entry.flags = flags
        entry.eax = eax
        entry.ebx = ebx
        entry.ecx = ecx
        entry.edx = edx
        return entry
    }

    /// The flag that marks `index` as significant.
    public static let significantIndex = UInt32(KVM_CPUID_FLAG_SIGNIFCANT_INDEX)
}

/// A heap buffer holding struct kvm_cpuid2 and its flexible array of entries.
struct CPUIDBuffer {
    private var storage: [UInt64]
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        let bytes = MemoryLayout<kvm_cpuid2>.size + capacity * MemoryLayout<kvm_cpuid_entry2>.stride
        storage = [UInt64](repeating: 0, count: (bytes + 7) / 8)
        storage.withUnsafeMutableBytes { bytes in
            // SAFETY: the buffer is at least sizeof(kvm_cpuid2) and 8-byte aligned.
            bytes.baseAddress!.assumingMemoryBound(to: kvm_cpuid2.self).pointee.nent = UInt32(capacity)
        }
    }

    init(entries: [CPUIDEntry]) {
        self.init(capacity: entries.count)
        storage.withUnsafeMutableBytes { bytes in
            let entryBase = bytes.baseAddress! + MemoryLayout<kvm_cpuid2>.size
            for (index, entry) in entries.enumerated() {
                // SAFETY: `capacity` entries were allocated after the header.
                entryBase.storeBytes(of: entry.raw, toByteOffset: index * MemoryLayout<kvm_cpuid_entry2>.stride,
                                     as: kvm_cpuid_entry2.self)
            }
        }
    }

    var pointer: UnsafeMutableRawPointer {
        mutating get {
            // SAFETY: callers use the pointer only for the ioctl, while `self` is alive and unmoved.
            storage.withUnsafeMutableBytes { $0.baseAddress! }
        }
    }

    var entries: [CPUIDEntry] {
        storage.withUnsafeBytes { bytes in
            let count = min(Int(bytes.load(as: kvm_cpuid2.self).nent), capacity)
            let entryBase = bytes.baseAddress! + MemoryLayout<kvm_cpuid2>.size
            return (0..<count).map { index in
                // SAFETY: the kernel wrote `nent` <= capacity entries.
                CPUIDEntry(entryBase.load(fromByteOffset: index * MemoryLayout<kvm_cpuid_entry2>.stride,
                                          as: kvm_cpuid_entry2.self))
            }
        }
    }
}
