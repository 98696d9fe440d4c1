import HyperV

/// The Root System Description Pointer, revision 2 (ACPI 6.4 §5.2.5.3;
/// Docs/hyperv-interface.md §13.4). Linux finds it through `boot_params.acpi_rsdp_addr`.
public enum RSDP {
    /// Revision 2 structures are 36 bytes.
    public static let size = 36
    /// The first checksum covers the ACPI 1.0 part, bytes 0..<20.
    public static let legacyChecksumLength = 20
    /// "RSD PTR ", 8 bytes.
    public static let signature = "RSD PTR "
    /// The signature is at offset 0.
    public static let signatureOffset = 0
    /// Checksum u8 over bytes 0..<20.
    public static let checksumOffset = 8
    /// OEMID, 6 bytes.
    public static let oemIDOffset = 9
    /// Revision u8: 2 for ACPI 2.0 and later.
    public static let revisionOffset = 15
    /// RsdtAddress u32: 0, as this platform has only an XSDT.
    public static let rsdtAddressOffset = 16
    /// Length u32 of the whole structure.
    public static let lengthOffset = 20
    /// XsdtAddress u64.
    public static let xsdtAddressOffset = 24
    /// Extended checksum u8 over all 36 bytes.
    public static let extendedChecksumOffset = 32

    /// An RSDP pointing at the XSDT at `xsdtAddress`.
    static func build(xsdtAddress: UInt64) -> [UInt8] {
        var bytes = [UInt8].zeros(size)
        bytes.storeASCII(signature, at: signatureOffset, width: 8)
        bytes.storeASCII(TableHeader.oemID, at: oemIDOffset, width: 6)
        bytes[revisionOffset] = 2
        bytes.storeLittleEndian(UInt32(size), at: lengthOffset)
        bytes.storeLittleEndian(xsdtAddress, at: xsdtAddressOffset)
        bytes[checksumOffset] = TableHeader.checksum(of: bytes[0..<legacyChecksumLength])
        bytes[extendedChecksumOffset] = TableHeader.checksum(of: bytes[...])
        return bytes
    }
}
