import HyperV

/// A statically linked x86-64 ELF executable to load at its physical addresses.
///
/// Images come from users (a path in a partition config), so every header field is checked
/// against the file and the partition's RAM before anything is copied.
public struct ELFImage: Sendable {
    /// A loadable segment.
    public struct Segment: Sendable, Equatable {
        /// Guest physical load address.
        public var address: UInt64
        /// The bytes from the file (p_filesz).
        public var fileBytes: ArraySlice<UInt8>
        /// Bytes in memory (p_memsz); the tail past the file bytes is zeroed.
        public var memorySize: UInt64
    }

    public var entry: UInt64
    public var segments: [Segment]

    /// The most PT_LOAD segments an image may have (the guests `GuestBuilder` links have a
    /// handful): with no two overlapping in guest memory, loading copies at most the RAM once.
    public static let maximumLoadSegments = 64

    /// The highest guest physical address any segment occupies.
    public var end: UInt64 { segments.map { $0.address + $0.memorySize }.max() ?? 0 }

    /// Parses an ELF64 little-endian x86-64 executable.
    public init(parsing bytes: [UInt8]) throws(BootError) {
        guard bytes.count >= 64, bytes[0] == 0x7F, bytes[1] == 0x45, bytes[2] == 0x4C, bytes[3] == 0x46 else {
            throw .invalidImage("not an ELF file")
        }
        guard bytes[4] == 2, bytes[5] == 1 else { throw .invalidImage("not a 64-bit little-endian ELF file") }
        guard bytes.littleEndian(UInt16.self, at: 18) == 0x3E else { throw .invalidImage("not an x86-64 ELF file") }
        guard let type = bytes.littleEndian(UInt16.self, at: 16), type == 2 else {
            throw .invalidImage("not an executable (ET_EXEC) ELF file")
        }
        guard let entry = bytes.littleEndian(UInt64.self, at: 24),
              let headerOffset = bytes.littleEndian(UInt64.self, at: 32),
              let headerSize = bytes.littleEndian(UInt16.self, at: 54),
              let headerCount = bytes.littleEndian(UInt16.self, at: 56),
              headerSize >= 56
        else { throw .invalidImage("truncated ELF header") }
        var segments: [Segment] = []
        for index in 0..<Int(headerCount) {
            let (base, overflow) = headerOffset.addingReportingOverflow(UInt64(index) * UInt64(headerSize))
            guard !overflow, base < UInt64(bytes.count), let start = Int(exactly: base),
                  let kind = bytes.littleEndian(UInt32.self, at: start),
                  let offset = bytes.littleEndian(UInt64.self, at: start + 8),
                  let physical = bytes.littleEndian(UInt64.self, at: start + 24),
                  let fileSize = bytes.littleEndian(UInt64.self, at: start + 32),
                  let memorySize = bytes.littleEndian(UInt64.self, at: start + 40)
            else { throw .invalidImage("program header \(index) is outside the file") }
            guard kind == 1 else { continue }  // PT_LOAD
            guard fileSize <= memorySize, offset <= UInt64(bytes.count), fileSize <= UInt64(bytes.count) - offset else {
                throw .invalidImage("segment \(index) extends past the end of the file")
            }
            guard physical.addingReportingOverflow(memorySize).overflow == false else {
                throw .invalidImage("segment \(index) wraps the address space")
            }
            guard segments.count < Self.maximumLoadSegments else {
                throw .invalidImage("more than \(Self.maximumLoadSegments) loadable segments")
            }
            // Segments that overlap would have loading copy the same memory again and again (as
            // many times as there are headers): an image's segments are disjoint.
            if memorySize > 0, let other = segments.firstIndex(where: {
                $0.memorySize > 0 && physical < $0.address + $0.memorySize && $0.address < physical + memorySize
            }) {
                throw .invalidImage("loadable segments \(other) and \(segments.count) overlap in memory")
            }
            segments.append(Segment(address: physical,
                                    fileBytes: bytes[Int(offset)..<Int(offset + fileSize)],
                                    memorySize: memorySize))
        }
        guard !segments.isEmpty else { throw .invalidImage("no loadable segments") }
        self.entry = entry
        self.segments = segments
    }
}

/// Why a partition could not be booted.
public enum BootError: Error, Equatable, CustomStringConvertible {
    /// The image is malformed.
    case invalidImage(String)
    /// The image or a boot structure does not fit in the partition's RAM.
    case doesNotFit(String)

    public var description: String {
        switch self {
        case .invalidImage(let reason): "invalid guest image: \(reason)"
        case .doesNotFit(let reason): "guest image does not fit: \(reason)"
        }
    }
}
