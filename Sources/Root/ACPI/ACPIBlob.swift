/// ACPI tables laid out for one guest physical address: the RSDP first, then each table on a
/// 16-byte boundary, with every internal pointer already resolved.
public struct ACPIBlob: Sendable {
    /// Where one table is.
    public struct Table: Equatable, Sendable {
        /// The 4-character signature ("XSDT", "FACP", "APIC", "DSDT").
        public var signature: String
        /// Guest physical address.
        public var address: UInt64
        /// Offset in `bytes`.
        public var offset: Int
        /// Length in bytes, as its header states.
        public var length: Int
    }

    /// The guest physical address of `bytes[0]`.
    public let address: UInt64
    /// Everything to copy there.
    public let bytes: [UInt8]
    /// The RSDP's guest physical address, for `boot_params.acpi_rsdp_addr`.
    public let rsdpAddress: UInt64
    /// The tables after the RSDP, in layout order.
    public let tables: [Table]

    /// The bytes of the table with `signature`, if present.
    public func table(_ signature: String) -> ArraySlice<UInt8>? {
        guard let table = tables.first(where: { $0.signature == signature }) else { return nil }
        return bytes[table.offset..<(table.offset + table.length)]
    }
}
