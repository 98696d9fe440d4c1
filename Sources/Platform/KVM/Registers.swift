import CKVM

/// The general-purpose registers of a virtual CPU (struct kvm_regs).
public struct GeneralRegisters: Hashable, Sendable {
    public var rax: UInt64 = 0, rbx: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0
    public var rsi: UInt64 = 0, rdi: UInt64 = 0, rsp: UInt64 = 0, rbp: UInt64 = 0
    public var r8: UInt64 = 0, r9: UInt64 = 0, r10: UInt64 = 0, r11: UInt64 = 0
    public var r12: UInt64 = 0, r13: UInt64 = 0, r14: UInt64 = 0, r15: UInt64 = 0
    public var rip: UInt64 = 0
    /// RFLAGS; bit 1 is always set.
    public var rflags: UInt64 = 0x2

    public init() {}

    init(_ raw: kvm_regs) {
        rax = raw.rax; rbx = raw.rbx; rcx = raw.rcx; rdx = raw.rdx
        rsi = raw.rsi; rdi = raw.rdi; rsp = raw.rsp; rbp = raw.rbp
        r8 = raw.r8; r9 = raw.r9; r10 = raw.r10; r11 = raw.r11
        r12 = raw.r12; r13 = raw.r13; r14 = raw.r14; r15 = raw.r15
        rip = raw.rip; rflags = raw.rflags
    }

    var raw: kvm_regs {
        var value = kvm_regs()
        value.rax = rax; value.rbx = rbx; value.rcx = rcx; value.rdx = rdx
        value.rsi = rsi; value.rdi = rdi; value.rsp = rsp; value.rbp = rbp
        value.r8 = r8; value.r9 = r9; value.r10 = r10; value.r11 = r11
        value.r12 = r12; value.r13 = r13; value.r14 = r14; value.r15 = r15
        value.rip = rip; value.rflags = rflags
        return value
    }
}

/// A segment register as the CPU caches it (struct kvm_segment).
public struct SegmentRegister: Hashable, Sendable {
    public var base: UInt64
    public var limit: UInt32
    public var selector: UInt16
    /// The descriptor type (e.g. 11 = execute/read accessed code, 3 = read/write accessed data).
    public var type: UInt8
    public var present: Bool
    public var privilegeLevel: UInt8
    /// D/B: 32-bit default operand size.
    public var defaultSize32: Bool
    /// S: code or data (not a system segment).
    public var codeOrData: Bool
    /// L: 64-bit code.
    public var long: Bool
    /// G: 4 KiB limit granularity.
    public var granularity: Bool

    public init(base: UInt64 = 0, limit: UInt32 = 0xFFFF_FFFF, selector: UInt16, type: UInt8, present: Bool = true,
                privilegeLevel: UInt8 = 0, defaultSize32: Bool, codeOrData: Bool = true, long: Bool,
                granularity: Bool = true) {
        self.base = base
        self.limit = limit
        self.selector = selector
        self.type = type
        self.present = present
        self.privilegeLevel = privilegeLevel
        self.defaultSize32 = defaultSize32
        self.codeOrData = codeOrData
        self.long = long
        self.granularity = granularity
    }

    /// A flat 64-bit ring-0 code segment.
    public static func flatCode64(selector: UInt16) -> SegmentRegister {
        SegmentRegister(selector: selector, type: 11, defaultSize32: false, long: true)
    }

    /// A flat ring-0 data segment.
    public static func flatData(selector: UInt16) -> SegmentRegister {
        SegmentRegister(selector: selector, type: 3, defaultSize32: true, long: false)
    }

    init(_ raw: kvm_segment) {
        base = raw.base; limit = raw.limit; selector = raw.selector; type = raw.type
        present = raw.present != 0; privilegeLevel = raw.dpl; defaultSize32 = raw.db != 0
        codeOrData = raw.s != 0; long = raw.l != 0; granularity = raw.g != 0
    }

    func apply(to raw: inout kvm_segment) {
        raw.base = base; raw.limit = limit; raw.selector = selector; raw.type = type
        raw.present = present ? 1 : 0; raw.dpl = privilegeLevel; raw.db = defaultSize32 ? 1 : 0
        raw.s = codeOrData ? 1 : 0; raw.l = long ? 1 : 0; raw.g = granularity ? 1 : 0
        raw.avl = 0; raw.unusable = 0
    }
}

/// The control state needed to enter a guest directly in 64-bit mode.
public struct LongModeEntryState: Hashable, Sendable {
    public var code: SegmentRegister
    public var data: SegmentRegister
    /// GDT base and limit.
    public var gdtBase: UInt64
    public var gdtLimit: UInt16
    /// The PML4 physical address.
    public var cr3: UInt64

    public init(code: SegmentRegister, data: SegmentRegister, gdtBase: UInt64, gdtLimit: UInt16, cr3: UInt64) {
        self.code = code
        self.data = data
        self.gdtBase = gdtBase
        self.gdtLimit = gdtLimit
        self.cr3 = cr3
    }

    /// CR0: PE | MP | ET | NE | WP | AM | PG.
    public static let cr0: UInt64 = 0x8005_0033
    /// CR4: PAE | OSFXSR | OSXMMEXCPT (SSE is usable).
    public static let cr4: UInt64 = 0x620
    /// EFER: SCE | LME | LMA.
    public static let efer: UInt64 = 0x501
}
