/// Offsets of the `boot_params` ("zero page") fields outside the setup header
/// (Docs/hyperv-interface.md §13.5; Documentation/x86/zero-page.rst).
public enum BootParams {
    /// The zero page is one 4 KiB page.
    public static let size = 4096
    /// acpi_rsdp_addr u64: the RSDP's physical address, which spares the kernel its BIOS scan.
    public static let acpiRSDPAddress = 0x070
    /// ext_ramdisk_image u32: the initrd address's high 32 bits.
    public static let extRamdiskImage = 0x0C0
    /// ext_ramdisk_size u32: the initrd size's high 32 bits.
    public static let extRamdiskSize = 0x0C4
    /// ext_cmd_line_ptr u32: the command-line address's high 32 bits.
    public static let extCommandLinePointer = 0x0C8
    /// e820_entries u8: the number of entries in `e820Table`.
    public static let e820EntryCount = 0x1E8
    /// sentinel u8: must stay 0, or the kernel assumes a loader that copied stale fields.
    public static let sentinel = 0x1EF
    /// e820_table: up to 128 entries of 20 bytes.
    public static let e820Table = 0x2D0
}
