/// ACPI tables built and positioned by their builder (the ACPI module's `ACPIBlob`), for the
/// boot plan to copy and to describe in the e820 map and the zero page
/// (Docs/hyperv-interface.md §13.4, §13.5).
public struct ACPITablePlacement: Sendable {
    /// Guest physical address of the first byte; the tables' internal pointers assume it.
    public var address: UInt64
    /// The tables, RSDP included.
    public var bytes: [UInt8]
    /// Guest physical address of the RSDP, inside `bytes`.
    public var rsdpAddress: UInt64

    public init(address: UInt64, bytes: [UInt8], rsdpAddress: UInt64) {
        self.address = address
        self.bytes = bytes
        self.rsdpAddress = rsdpAddress
    }
}
