import HyperV

/// The BIOS-style physical memory map handed to Linux in the zero page
/// (Docs/hyperv-interface.md §13.5; Documentation/x86/zero-page.rst `e820_table`).
///
/// Entries never overlap, are never empty and never wrap; there are at most 128 of them.
public struct E820Map: Equatable, Sendable {
    /// One `struct boot_e820_entry`: u64 addr, u64 size, u32 type, packed into 20 bytes.
    public struct Entry: Equatable, Sendable {
        /// The first byte.
        public var address: UInt64
        /// Bytes in the range.
        public var size: UInt64
        /// What the range is.
        public var type: EntryType

        public init(address: UInt64, size: UInt64, type: EntryType) {
            self.address = address
            self.size = size
            self.type = type
        }

        /// One past the last byte; callers only see entries that `append` accepted, which do not wrap.
        public var end: UInt64 { address &+ size }
    }

    /// An e820 range type.
    public struct EntryType: RawRepresentable, Hashable, Sendable {
        public var rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Usable RAM.
        public static let ram = EntryType(rawValue: 1)
        /// Reserved: the kernel never uses it.
        public static let reserved = EntryType(rawValue: 2)
        /// ACPI tables the kernel may reclaim once it has read them.
        public static let acpi = EntryType(rawValue: 3)
        /// ACPI non-volatile storage.
        public static let nvs = EntryType(rawValue: 4)
    }

    /// The zero page holds at most 128 entries.
    public static let maximumEntries = 128
    /// Bytes per encoded entry.
    public static let entrySize = 20

    /// The entries in the order they were appended.
    public private(set) var entries: [Entry] = []

    /// An empty map.
    public init() {}

    /// Appends `entry`.
    /// - Throws: `.invalidMemoryMap` if the map is full or the entry is empty, wraps past
    ///   2^64, or overlaps an existing entry.
    public mutating func append(_ entry: Entry) throws(LinuxBootError) {
        guard entries.count < Self.maximumEntries else {
            throw .invalidMemoryMap("more than \(Self.maximumEntries) entries")
        }
        guard entry.size > 0 else { throw .invalidMemoryMap("empty entry at 0x\(String(entry.address, radix: 16))") }
        guard !entry.address.addingReportingOverflow(entry.size).overflow else {
            throw .invalidMemoryMap("entry at 0x\(String(entry.address, radix: 16)) wraps the address space")
        }
        if let clash = entries.first(where: { $0.address < entry.end && entry.address < $0.end }) {
            throw .invalidMemoryMap("0x\(String(entry.address, radix: 16))..<0x\(String(entry.end, radix: 16)) overlaps "
                                    + "0x\(String(clash.address, radix: 16))..<0x\(String(clash.end, radix: 16))")
        }
        entries.append(entry)
    }

    /// Appends a range of `type`.
    public mutating func append(address: UInt64, size: UInt64, type: EntryType) throws(LinuxBootError) {
        try append(Entry(address: address, size: size, type: type))
    }

    /// The type of the entry containing `address`, if any.
    public func type(at address: UInt64) -> EntryType? {
        entries.first { $0.address <= address && address < $0.end }?.type
    }

    /// The entries as the zero page's `e820_table` stores them, 20 bytes each.
    public var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(entries.count * Self.entrySize)
        for entry in entries {
            bytes.appendLittleEndian(entry.address)
            bytes.appendLittleEndian(entry.size)
            bytes.appendLittleEndian(entry.type.rawValue)
        }
        return bytes
    }
}
