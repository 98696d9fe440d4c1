import GuestMemory
import VMBusProtocol

/// Why the VSP could not touch a guest buffer.
public struct GuestAccessError: Error, Hashable, Sendable {
    /// The guest physical address of the failed access.
    public var address: UInt64
    /// Its length.
    public var length: Int
    public init(address: UInt64, length: Int) {
        self.address = address
        self.length = length
    }
}

/// The guest RAM the network VSP reads transmit data from and writes receive data into. The
/// parent's implementation is `GuestMemory` (bounds-checked, read-once copies); tests use an
/// in-memory one.
public protocol NetworkGuestMemory {
    /// Copies `count` bytes at guest physical `address` into `buffer[bufferOffset...]`.
    func read(at address: UInt64, into buffer: inout [UInt8], bufferOffset: Int, count: Int) throws(GuestAccessError)
    /// Copies `bytes[offset..<offset+count]` to guest physical `address`.
    func write(_ bytes: [UInt8], from offset: Int, count: Int, at address: UInt64) throws(GuestAccessError)
}

extension GuestMemory: NetworkGuestMemory {
    public func read(at address: UInt64, into buffer: inout [UInt8], bufferOffset: Int, count: Int)
        throws(GuestAccessError)
    {
        do throws(GuestMemoryError) {
            try read(at: GuestPhysicalAddress(address), into: &buffer, bufferOffset: bufferOffset, count: count)
        } catch {
            throw GuestAccessError(address: address, length: count)
        }
    }

    public func write(_ bytes: [UInt8], from offset: Int, count: Int, at address: UInt64) throws(GuestAccessError) {
        do throws(GuestMemoryError) {
            try write(bytes, from: offset, count: count, at: GuestPhysicalAddress(address))
        } catch {
            throw GuestAccessError(address: address, length: count)
        }
    }
}

/// A buffer the guest shared through a GPADL: `byteCount` bytes starting `byteOffset` bytes into
/// the first of `pageNumbers` (the VMBus server's `GPADL` carries exactly these fields).
public struct GuestBufferDescriptor: Hashable, Sendable {
    public var byteOffset: UInt32
    public var byteCount: UInt32
    public var pageNumbers: [UInt64]
    public init(byteOffset: UInt32, byteCount: UInt32, pageNumbers: [UInt64]) {
        self.byteOffset = byteOffset
        self.byteCount = byteCount
        self.pageNumbers = pageNumbers
    }
}

/// Looks up the GPADLs of the device's channels by handle (the receive and send buffers arrive
/// as handles in SEND_RECV_BUF / SEND_SEND_BUF).
public protocol GPADLTable {
    /// The complete GPADL `handle`, or `nil` if there is none.
    func buffer(forGPADL handle: UInt32) -> GuestBufferDescriptor?
}

/// A byte range of guest RAM spread over pages: a GPADL buffer or one GPA-direct range. Every
/// access is checked against `count` before any address is formed.
struct PagedGuestBuffer: Sendable {
    let pages: [UInt64]
    let firstByte: Int
    /// Usable bytes.
    let count: Int
    /// The address of byte 0 when the pages are contiguous.
    private let contiguousBase: UInt64?

    static let pageSize = VMBusConstants.pageSize

    /// Page numbers at or above this are refused: 2^40 pages is 4 PiB, far beyond any guest,
    /// and keeps every address computed here (page × 4096 + a 32-bit offset) from overflowing.
    static let pageNumberLimit: UInt64 = 1 << 40

    /// `nil` if the pages cannot hold `byteOffset + byteCount` bytes or a page number is absurd.
    init?(pages: [UInt64], byteOffset: UInt32, byteCount: UInt32) {
        let needed = VMBusConstants.pageCount(byteOffset: byteOffset, byteCount: byteCount)
        guard needed <= pages.count, pages.allSatisfy({ $0 < Self.pageNumberLimit }) else { return nil }
        self.pages = pages
        firstByte = Int(byteOffset)
        count = Int(byteCount)
        let contiguous = pages.isEmpty || pages.enumerated().allSatisfy { $0.element == pages[0] &+ UInt64($0.offset) }
        contiguousBase = contiguous && !pages.isEmpty ? pages[0] * UInt64(Self.pageSize) + UInt64(byteOffset) : nil
    }

    init?(_ descriptor: GuestBufferDescriptor) {
        self.init(pages: descriptor.pageNumbers, byteOffset: descriptor.byteOffset, byteCount: descriptor.byteCount)
    }

    /// Whether any page of this buffer is also a page of `other`.
    func overlaps(_ other: PagedGuestBuffer) -> Bool {
        let mine = Set(pages)
        return other.pages.contains { mine.contains($0) }
    }

    private func checked(_ offset: Int, _ length: Int) throws(GuestAccessError) {
        guard offset >= 0, length >= 0, offset <= count, length <= count - offset else {
            throw GuestAccessError(address: UInt64(truncatingIfNeeded: offset), length: length)
        }
    }

    /// Copies `length` bytes at `offset` of the buffer to `buffer[bufferOffset...]`.
    func read<Memory: NetworkGuestMemory>(_ memory: Memory, at offset: Int, count length: Int,
                                          into buffer: inout [UInt8], bufferOffset: Int) throws(GuestAccessError) {
        try checked(offset, length)
        if let contiguousBase {
            try memory.read(at: contiguousBase + UInt64(offset), into: &buffer, bufferOffset: bufferOffset, count: length)
            return
        }
        var done = 0
        while done < length {
            let position = firstByte + offset + done
            let within = position % Self.pageSize
            let chunk = min(length - done, Self.pageSize - within)
            let address = pages[position / Self.pageSize] * UInt64(Self.pageSize) + UInt64(within)
            try memory.read(at: address, into: &buffer, bufferOffset: bufferOffset + done, count: chunk)
            done += chunk
        }
    }

    /// Copies `bytes[from..<from+length]` to `offset` of the buffer.
    func write<Memory: NetworkGuestMemory>(_ memory: Memory, _ bytes: [UInt8], from: Int, count length: Int,
                                           at offset: Int) throws(GuestAccessError) {
        try checked(offset, length)
        if let contiguousBase {
            try memory.write(bytes, from: from, count: length, at: contiguousBase + UInt64(offset))
            return
        }
        var done = 0
        while done < length {
            let position = firstByte + offset + done
            let within = position % Self.pageSize
            let chunk = min(length - done, Self.pageSize - within)
            let address = pages[position / Self.pageSize] * UInt64(Self.pageSize) + UInt64(within)
            try memory.write(bytes, from: from + done, count: chunk, at: address)
            done += chunk
        }
    }
}
