import HyperV

/// The 36-byte header every ACPI system description table starts with (ACPI 6.4 §5.2.6), and
/// the identity this hypervisor writes into it.
public enum TableHeader {
    /// Header size; the table body follows.
    public static let size = 36
    /// Signature, 4 ASCII bytes.
    public static let signatureOffset = 0
    /// Length u32: the whole table, header included.
    public static let lengthOffset = 4
    /// Revision u8.
    public static let revisionOffset = 8
    /// Checksum u8: makes the table's bytes sum to 0.
    public static let checksumOffset = 9
    /// OEMID, 6 bytes.
    public static let oemIDOffset = 10
    /// OEM Table ID, 8 bytes.
    public static let oemTableIDOffset = 16
    /// OEM Revision u32.
    public static let oemRevisionOffset = 24
    /// Creator ID, 4 bytes.
    public static let creatorIDOffset = 28
    /// Creator Revision u32.
    public static let creatorRevisionOffset = 32

    /// The OEMID in every table and the RSDP.
    public static let oemID = "HVSWFT"
    /// The OEM Table ID in every table.
    public static let oemTableID = "HVSWFTVM"
    /// The OEM revision in every table.
    public static let oemRevision: UInt32 = 1
    /// The creator ID in every table.
    public static let creatorID = "HVSW"
    /// The creator revision in every table.
    public static let creatorRevision: UInt32 = 1

    /// A complete table: a header for `signature` and `revision`, then `body`, with the length
    /// and checksum filled in.
    static func assemble(signature: String, revision: UInt8, body: [UInt8]) -> [UInt8] {
        var table = [UInt8].zeros(size)
        table.storeASCII(signature, at: signatureOffset, width: 4)
        table.storeLittleEndian(UInt32(size + body.count), at: lengthOffset)
        table[revisionOffset] = revision
        table.storeASCII(oemID, at: oemIDOffset, width: 6)
        table.storeASCII(oemTableID, at: oemTableIDOffset, width: 8)
        table.storeLittleEndian(oemRevision, at: oemRevisionOffset)
        table.storeASCII(creatorID, at: creatorIDOffset, width: 4)
        table.storeLittleEndian(creatorRevision, at: creatorRevisionOffset)
        table += body
        table[checksumOffset] = checksum(of: table[...])
        return table
    }

    /// The byte that makes `bytes` (with this byte in place of a zero) sum to 0 modulo 256.
    public static func checksum(of bytes: ArraySlice<UInt8>) -> UInt8 {
        0 &- bytes.reduce(UInt8(0), &+)
    }
}

extension Array where Element == UInt8 {
    /// Stores `text`'s ASCII bytes at `offset`, truncated or space-padded to `width`.
    mutating func storeASCII(_ text: String, at offset: Int, width: Int) {
        let characters = Array(text.utf8.prefix(width))
        for index in 0..<width {
            self[offset + index] = index < characters.count ? characters[index] : 0x20
        }
    }
}
