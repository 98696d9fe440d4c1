import HyperV

/// The Extended System Description Table: the header and one u64 address per table
/// (ACPI 6.4 §5.2.8; Docs/hyperv-interface.md §13.4).
public enum XSDT {
    /// The table signature.
    public static let signature = "XSDT"
    /// The table revision.
    public static let revision: UInt8 = 1
    /// The first table address; the rest follow every 8 bytes.
    public static let entriesOffset = TableHeader.size

    /// The table's size for `count` entries.
    static func size(entries count: Int) -> Int { TableHeader.size + 8 * count }

    /// An XSDT listing `tables`.
    static func build(tables: [UInt64]) -> [UInt8] {
        var body: [UInt8] = []
        for address in tables { body.appendLittleEndian(address) }
        return TableHeader.assemble(signature: signature, revision: revision, body: body)
    }
}
