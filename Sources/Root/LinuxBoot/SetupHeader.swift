/// Offsets of the setup-header fields this loader reads or writes. The header sits at the same
/// offsets in the bzImage file and in `boot_params`, so one table serves both
/// (Docs/hyperv-interface.md §13.5; Documentation/x86/boot.rst "The real-mode kernel header").
public enum SetupHeader {
    /// The header starts here in the file and in the zero page.
    public static let start = 0x1F1
    /// The byte after the space `boot_params` gives the header; a header that claims to run
    /// longer is copied only up to here, since the zero page's EDD and e820 fields follow.
    public static let zeroPageLimit = 0x290
    /// The header's length is `byte[lengthByte] + 0x202` (the operand of the jump at 0x200).
    public static let lengthByte = 0x201
    /// The first header byte past `init_size`, the last field this loader reads (protocol 2.10+).
    public static let minimumEnd = 0x264

    /// setup_sects u8: 512-byte sectors of real-mode setup code after the boot sector; 0 means 4.
    public static let setupSectors = 0x1F1
    /// header u32: "HdrS".
    public static let magic = 0x202
    /// version u16: the boot protocol version, major in the high byte.
    public static let version = 0x206
    /// type_of_loader u8: 0xFF is "undefined loader"; any non-zero value keeps the initrd.
    public static let typeOfLoader = 0x210
    /// loadflags u8 (`LoadFlags`).
    public static let loadFlags = 0x211
    /// ramdisk_image u32: the initrd's address, low 32 bits.
    public static let ramdiskImage = 0x218
    /// ramdisk_size u32: the initrd's size, low 32 bits.
    public static let ramdiskSize = 0x21C
    /// heap_end_ptr u16: only read by the real-mode setup code, which a 64-bit boot skips.
    public static let heapEndPointer = 0x224
    /// cmd_line_ptr u32: the command line's address, low 32 bits.
    public static let commandLinePointer = 0x228
    /// initrd_addr_max u32: the highest address the initrd may occupy.
    public static let initrdAddressMax = 0x22C
    /// kernel_alignment u32: the alignment a relocatable kernel's load address needs.
    public static let kernelAlignment = 0x230
    /// relocatable_kernel u8: non-zero if the kernel may load at any aligned address.
    public static let relocatableKernel = 0x234
    /// xloadflags u16 (`XLoadFlags`).
    public static let xLoadFlags = 0x236
    /// cmdline_size u32: the longest command line, without its terminating NUL.
    public static let commandLineSize = 0x238
    /// pref_address u64: where the kernel prefers to be loaded.
    public static let preferredAddress = 0x258
    /// setup_data u64: the physical address of a list of setup_data nodes the loader passes.
    public static let setupData = 0x250
    /// init_size u32: bytes of linear memory the kernel needs from its load address.
    public static let initSize = 0x260

    /// "HdrS", little-endian.
    public static let magicValue: UInt32 = 0x5372_6448
    /// Protocol 2.12, the first with `xloadflags`.
    public static let minimumVersion: UInt16 = 0x020C
    /// The 64-bit entry point is this far past the load address.
    public static let entryOffset: UInt64 = 0x200
}
