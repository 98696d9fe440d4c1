/// The setup header's `xloadflags` at 0x236, protocol 2.12+ (Documentation/x86/boot.rst).
public struct XLoadFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// XLF_KERNEL_64: there is a 64-bit entry point at load address + 0x200.
    public static let kernel64 = XLoadFlags(rawValue: 1 << 0)
    /// XLF_CAN_BE_LOADED_ABOVE_4G: the kernel, zero page, command line and initrd may sit above 4 GiB.
    public static let canBeLoadedAbove4G = XLoadFlags(rawValue: 1 << 1)
    /// XLF_EFI_HANDOVER_32.
    public static let efiHandover32 = XLoadFlags(rawValue: 1 << 2)
    /// XLF_EFI_HANDOVER_64.
    public static let efiHandover64 = XLoadFlags(rawValue: 1 << 3)
    /// XLF_EFI_KEXEC.
    public static let efiKexec = XLoadFlags(rawValue: 1 << 4)
}
