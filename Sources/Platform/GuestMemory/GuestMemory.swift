import Glibc
import LinuxSupport
import Synchronization

/// The RAM of one child partition, mapped into this process.
///
/// Guest RAM is a memfd covering guest physical addresses `0..<size`. The root creates it
/// and hands the descriptor to KVM and, over a Unix socket, to the parent partition, which
/// maps the same pages with `GuestMemory(mapping:)`.
///
/// UNSAFETY: this is the only type in the package that holds a raw pointer into guest RAM.
/// Every accessor validates the whole range against `size` in 64-bit arithmetic before it
/// forms a pointer; no pointer or buffer into guest RAM ever escapes an accessor. Guest RAM
/// is shared with a hostile, concurrently running guest, so accessors copy bytes in or out
/// exactly once (callers parse their local copy, never guest RAM twice), and shared words
/// such as ring indices and SynIC flags are accessed only through `Synchronization` atomics.
public final class GuestMemory: Sendable {
    /// Bytes of guest RAM.
    public let size: Int
    /// The memfd behind the mapping.
    public let file: OwnedDescriptor
    /// The mapping's base address as an integer: only `pointer(at:length:)` turns it back
    /// into a pointer, after the bounds check.
    private let baseAddress: UInt

    /// Creates `size` bytes of zeroed guest RAM in a new memfd and maps it. The memfd's size is
    /// sealed: the parent partition it is handed to can map it, but cannot shrink it under the
    /// root's mapping (which would make the root's next access to the lost pages a SIGBUS).
    public static func create(name: String, size: Int) throws(SystemError) -> GuestMemory {
        precondition(size > 0 && size % Int(GuestPhysicalAddress.pageSize) == 0, "guest RAM is whole pages")
        let file = try MemoryFile.create(name: name, size: size, sealed: true)
        return try GuestMemory(mapping: file, size: size)
    }

    /// Maps guest RAM received from another process.
    /// - Parameters:
    ///   - file: the memfd.
    ///   - size: the number of bytes to map; must not exceed the file's size.
    public init(mapping file: OwnedDescriptor, size: Int) throws(SystemError) {
        let fileSize = try MemoryFile.size(of: file)
        guard size > 0, size <= fileSize else {
            throw SystemError("map \(size) bytes of a \(fileSize)-byte guest memory file", errno: .invalidArgument)
        }
        let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, file.rawValue, 0)
        guard let mapped, mapped != MAP_FAILED else { throw SystemError.current("map \(size) bytes of guest memory") }
        self.file = file
        self.size = size
        self.baseAddress = UInt(bitPattern: mapped)
    }

    deinit {
        // SAFETY: the mapping was created in init with exactly this base and size, and no
        // pointer into it outlives an accessor call.
        munmap(UnsafeMutableRawPointer(bitPattern: baseAddress), size)
    }

    /// The host virtual address of guest physical address 0, for KVM_SET_USER_MEMORY_REGION.
    public var hostAddressForHypervisor: UInt64 { UInt64(baseAddress) }

    /// Whether `length` bytes at `address` are all guest RAM.
    @inlinable
    public func contains(_ address: GuestPhysicalAddress, length: Int) -> Bool {
        guard length >= 0 else { return false }
        let (end, overflow) = address.rawValue.addingReportingOverflow(UInt64(length))
        return !overflow && end <= UInt64(size)
    }

    /// The one place a guest address becomes a host pointer.
    @usableFromInline
    func pointer(at address: GuestPhysicalAddress, length: Int) throws(GuestMemoryError) -> UnsafeMutableRawPointer {
        guard contains(address, length: length) else { throw .outOfBounds(address: address, length: length) }
        // SAFETY: [address, address+length) lies inside the live mapping of `size` bytes.
        return UnsafeMutableRawPointer(bitPattern: baseAddress &+ UInt(address.rawValue))!
    }

    // MARK: Plain copies (read once)

    /// Reads a little-endian integer (any alignment).
    @inlinable
    public func load<T: FixedWidthInteger>(_: T.Type, at address: GuestPhysicalAddress) throws(GuestMemoryError) -> T {
        let source = try pointer(at: address, length: MemoryLayout<T>.size)
        return T(littleEndian: source.loadUnaligned(as: T.self))
    }

    /// Writes a little-endian integer (any alignment).
    @inlinable
    public func store<T: FixedWidthInteger>(_ value: T, at address: GuestPhysicalAddress) throws(GuestMemoryError) {
        let destination = try pointer(at: address, length: MemoryLayout<T>.size)
        destination.storeBytes(of: value.littleEndian, as: T.self)
    }

    /// Copies `count` bytes out of guest RAM.
    public func read(at address: GuestPhysicalAddress, count: Int) throws(GuestMemoryError) -> [UInt8] {
        let source = try pointer(at: address, length: count)
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            // SAFETY: `buffer` has room for `count` bytes; `source` covers `count` bytes of RAM.
            if count > 0 { buffer.baseAddress!.update(from: source.assumingMemoryBound(to: UInt8.self), count: count) }
            initialized = count
        }
    }

    /// Copies `count` bytes out of guest RAM into `buffer[bufferOffset...]`.
    @inlinable
    public func read(
        at address: GuestPhysicalAddress, into buffer: inout [UInt8], bufferOffset: Int = 0, count: Int
    ) throws(GuestMemoryError) {
        precondition(bufferOffset >= 0 && count >= 0 && bufferOffset + count <= buffer.count, "host buffer too small")
        let source = try pointer(at: address, length: count)
        buffer.withUnsafeMutableBytes { destination in
            // SAFETY: both ranges were checked above; guest RAM never overlaps a Swift array.
            (destination.baseAddress! + bufferOffset).copyMemory(from: source, byteCount: count)
        }
    }

    /// Copies bytes into guest RAM.
    public func write(_ bytes: [UInt8], at address: GuestPhysicalAddress) throws(GuestMemoryError) {
        try write(bytes, from: 0, count: bytes.count, at: address)
    }

    /// Copies a slice of an array into guest RAM, without copying it out of the array first.
    public func write(_ bytes: ArraySlice<UInt8>, at address: GuestPhysicalAddress) throws(GuestMemoryError) {
        let destination = try pointer(at: address, length: bytes.count)
        bytes.withUnsafeBytes { source in
            // SAFETY: the destination range was checked above; the source is the slice's own
            // storage, `source.count` bytes.
            if let base = source.baseAddress, source.count > 0 { destination.copyMemory(from: base, byteCount: source.count) }
        }
    }

    /// Copies `bytes[offset..<offset+count]` into guest RAM.
    @inlinable
    public func write(
        _ bytes: [UInt8], from offset: Int, count: Int, at address: GuestPhysicalAddress
    ) throws(GuestMemoryError) {
        precondition(offset >= 0 && count >= 0 && offset + count <= bytes.count, "host buffer too small")
        let destination = try pointer(at: address, length: count)
        bytes.withUnsafeBytes { source in
            // SAFETY: both ranges were checked above.
            if count > 0 { destination.copyMemory(from: source.baseAddress! + offset, byteCount: count) }
        }
    }

    /// Fills `count` bytes of guest RAM with `byte`.
    public func fill(_ byte: UInt8, at address: GuestPhysicalAddress, count: Int) throws(GuestMemoryError) {
        let destination = try pointer(at: address, length: count)
        // SAFETY: the range was checked above.
        memset(destination, Int32(byte), count)
    }

    /// Copies `count` bytes within guest RAM (the ranges may overlap).
    public func move(from source: GuestPhysicalAddress, to destination: GuestPhysicalAddress, count: Int) throws(GuestMemoryError) {
        let from = try pointer(at: source, length: count)
        let to = try pointer(at: destination, length: count)
        // SAFETY: both ranges were checked above; memmove tolerates overlap.
        memmove(to, from, count)
    }

    // MARK: Atomics (naturally aligned words shared with the guest)

    @usableFromInline
    func atomic<T: AtomicRepresentable>(
        _: T.Type, at address: GuestPhysicalAddress
    ) throws(GuestMemoryError) -> UnsafeMutablePointer<Atomic<T>> {
        let alignment = MemoryLayout<T>.alignment
        guard address.rawValue % UInt64(alignment) == 0 else { throw .misaligned(address: address, alignment: alignment) }
        // SAFETY: the word is in bounds and naturally aligned; Atomic<T> has T's size and
        // alignment, and all concurrent host access to it goes through Atomic.
        return try pointer(at: address, length: MemoryLayout<T>.size).assumingMemoryBound(to: Atomic<T>.self)
    }

    /// Atomically loads a 32-bit word.
    @inlinable
    public func atomicLoad(_: UInt32.Type, at address: GuestPhysicalAddress, ordering: SharedMemoryOrdering) throws(GuestMemoryError) -> UInt32 {
        let word = try atomic(UInt32.self, at: address)
        switch ordering {
        case .relaxed: return word.pointee.load(ordering: .relaxed)
        case .acquiring, .acquiringAndReleasing: return word.pointee.load(ordering: .acquiring)
        case .releasing, .sequentiallyConsistent: return word.pointee.load(ordering: .sequentiallyConsistent)
        }
    }

    /// Atomically stores a 32-bit word.
    @inlinable
    public func atomicStore(_ value: UInt32, at address: GuestPhysicalAddress, ordering: SharedMemoryOrdering) throws(GuestMemoryError) {
        let word = try atomic(UInt32.self, at: address)
        switch ordering {
        case .relaxed: word.pointee.store(value, ordering: .relaxed)
        case .releasing, .acquiringAndReleasing: word.pointee.store(value, ordering: .releasing)
        case .acquiring, .sequentiallyConsistent: word.pointee.store(value, ordering: .sequentiallyConsistent)
        }
    }

    /// Atomically ORs `bits` into a 32-bit word and returns the previous value.
    @inlinable
    @discardableResult
    public func atomicOr(_ bits: UInt32, at address: GuestPhysicalAddress, ordering: SharedMemoryOrdering) throws(GuestMemoryError) -> UInt32 {
        let word = try atomic(UInt32.self, at: address)
        switch ordering {
        case .relaxed: return word.pointee.bitwiseOr(bits, ordering: .relaxed).oldValue
        case .acquiring: return word.pointee.bitwiseOr(bits, ordering: .acquiring).oldValue
        case .releasing: return word.pointee.bitwiseOr(bits, ordering: .releasing).oldValue
        case .acquiringAndReleasing: return word.pointee.bitwiseOr(bits, ordering: .acquiringAndReleasing).oldValue
        case .sequentiallyConsistent: return word.pointee.bitwiseOr(bits, ordering: .sequentiallyConsistent).oldValue
        }
    }

    /// Atomically ORs `bits` into a 64-bit word and returns the previous value.
    @inlinable
    @discardableResult
    public func atomicOr(_ bits: UInt64, at address: GuestPhysicalAddress, ordering: SharedMemoryOrdering) throws(GuestMemoryError) -> UInt64 {
        let word = try atomic(UInt64.self, at: address)
        switch ordering {
        case .relaxed: return word.pointee.bitwiseOr(bits, ordering: .relaxed).oldValue
        case .acquiring: return word.pointee.bitwiseOr(bits, ordering: .acquiring).oldValue
        case .releasing: return word.pointee.bitwiseOr(bits, ordering: .releasing).oldValue
        case .acquiringAndReleasing: return word.pointee.bitwiseOr(bits, ordering: .acquiringAndReleasing).oldValue
        case .sequentiallyConsistent: return word.pointee.bitwiseOr(bits, ordering: .sequentiallyConsistent).oldValue
        }
    }

    /// Atomically exchanges a 64-bit word (sequentially consistent) and returns the previous value.
    @inlinable
    public func atomicExchange(_ value: UInt64, at address: GuestPhysicalAddress) throws(GuestMemoryError) -> UInt64 {
        try atomic(UInt64.self, at: address).pointee.exchange(value, ordering: .sequentiallyConsistent)
    }

    /// Atomically replaces a 32-bit word if it holds `expected` (sequentially consistent).
    @inlinable
    public func compareExchange(
        expected: UInt32, desired: UInt32, at address: GuestPhysicalAddress
    ) throws(GuestMemoryError) -> (exchanged: Bool, original: UInt32) {
        try atomic(UInt32.self, at: address).pointee.compareExchange(
            expected: expected, desired: desired, ordering: .sequentiallyConsistent)
    }

    /// A full memory barrier, for the "clear mask, barrier, re-check" sequences of ring and
    /// SynIC protocols.
    @inlinable
    public static func fullBarrier() {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
    }
}

/// The memory ordering of an atomic access to memory shared with a guest. Orderings that do
/// not apply to an operation are strengthened (a "releasing" load is sequentially consistent).
public enum SharedMemoryOrdering: Sendable {
    case relaxed
    case acquiring
    case releasing
    case acquiringAndReleasing
    case sequentiallyConsistent
}

// MARK: Vectored I/O

/// A piece of a guest buffer: `length` bytes from `offset` into guest page `pageNumber`
/// (running on into the following pages if it is longer than the rest of the page).
public struct GuestMemorySegment: Hashable, Sendable {
    public var pageNumber: UInt64
    public var offset: UInt32
    public var length: UInt32

    public init(pageNumber: UInt64, offset: UInt32, length: UInt32) {
        self.pageNumber = pageNumber
        self.offset = offset
        self.length = length
    }
}

/// A guest buffer as iovec-style raw ranges, validated against guest RAM, for the kernel to
/// read or write in one vectored call (preadv/pwritev, io_uring READV/WRITEV).
///
/// UNSAFETY: the iovecs hold host addresses inside the guest RAM mapping. They are handed only
/// to the kernel, which copies through them with its own fault handling; Swift code never
/// dereferences them. They stay valid while any copy of the value lives, because its storage
/// keeps the `GuestMemory` (and so the mapping) alive; an asynchronous engine keeps a copy until
/// the kernel has completed the operation. The guest may change the bytes concurrently, which only
/// changes the data it reads or writes, as with DMA on real hardware.
public struct GuestIOVectors: @unchecked Sendable {
    // SAFETY: `storage` holds the iovecs tail-allocated after its header (one allocation per
    // buffer). Only `Builder`, in this file, writes them, before it hands the value out; they
    // are immutable afterwards, and copies of the value share them. The first `count` are
    // initialised, each covering a range `GuestMemory.pointer(at:length:)` checked; the header
    // keeps `memory`, and so the mapping they point into, alive. iovec is a trivial type:
    // nothing needs deinitialising.
    fileprivate let storage: Storage

    fileprivate struct Header {
        let memory: GuestMemory
        var count = 0
        var byteCount = 0
    }

    fileprivate final class Storage: ManagedBuffer<Header, iovec> {}

    /// The guest RAM the vectors point into.
    public var memory: GuestMemory { storage.withUnsafeMutablePointerToHeader { $0.pointee.memory } }
    /// Total bytes described.
    public var byteCount: Int { storage.withUnsafeMutablePointerToHeader { $0.pointee.byteCount } }
    /// How many iovecs there are (at most `GuestMemory.maximumIOVectors`).
    public var count: Int { storage.withUnsafeMutablePointerToHeader { $0.pointee.count } }
    // SAFETY (the three above): the header is initialised when the storage is made and written
    // only by `Builder` before the value exists; reading it through its pointer skips the
    // run-time exclusivity check that `header` costs on every call (a class property), which
    // showed in a profile of the storage channel worker, where each request reads these
    // several times.

    /// The validated guest-physical ranges, merged where contiguous: a new array on every call,
    /// for copies and resubmissions rather than the per-request path.
    public var ranges: [(address: GuestPhysicalAddress, length: Int)] {
        let (memory, count) = (memory, count)
        return storage.withUnsafeMutablePointerToElements { vectors in
            (0..<count).map { index in
                // SAFETY: `index` < count, an initialised entry.
                let vector = vectors[index]
                return (memory.address(ofMapped: vector.iov_base), vector.iov_len)
            }
        }
    }

    /// Whether every range starts at a guest address and has a length that are multiples of
    /// `alignment` (what O_DIRECT asks of each iovec).
    public func isAligned(to alignment: Int) -> Bool {
        guard alignment > 0 else { return false }
        let (memory, count) = (memory, count)
        return storage.withUnsafeMutablePointerToElements { vectors in
            for index in 0..<count {
                // SAFETY: `index` < count, an initialised entry.
                let vector = vectors[index]
                guard memory.address(ofMapped: vector.iov_base).rawValue % UInt64(alignment) == 0,
                      vector.iov_len % alignment == 0 else { return false }
            }
            return true
        }
    }

    /// Calls `body` with the iovec array and its count. The pointer must only be passed to the
    /// kernel, and used no longer than this object is kept alive.
    public func withUnsafeIOVectors<Result, Failure: Error>(
        _ body: (UnsafePointer<iovec>, Int) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        // SAFETY: the first `count` elements are initialised iovecs, tail-allocated in `storage`.
        // An engine may keep the pointer past this call (io_uring reads the iovecs when it
        // submits): that relies on a class instance's tail allocation never moving while the
        // instance lives, which the engine ensures by keeping a copy of this value until the
        // operation is reaped.
        let count = count
        return try storage.withUnsafeMutablePointerToElements { vectors throws(Failure) in
            try body(UnsafePointer(vectors), count)
        }
    }

    /// The same buffer without its first `byteCount` bytes, to resubmit the rest of a short
    /// transfer.
    public func dropping(first dropped: Int) throws(GuestMemoryError) -> GuestIOVectors {
        var remaining = max(dropped, 0)
        var builder = Builder(memory: memory, capacity: count)
        for range in ranges {
            if remaining >= range.length {
                remaining -= range.length
                continue
            }
            guard let start = range.address.advanced(by: UInt64(remaining)) else {
                throw .outOfBounds(address: range.address, length: range.length)
            }
            try builder.append(start, length: range.length - remaining)
            remaining = 0
        }
        return builder.finish()
    }

    /// Validates ranges against guest RAM and writes them, merged where contiguous, straight
    /// into the storage of the value it hands out: one allocation for the header and the
    /// iovecs, none in between. A builder that throws just goes away with what it built.
    fileprivate struct Builder {
        private let storage: Storage
        private let capacity: Int
        private var lastEnd: UInt64 = .max

        init(memory: GuestMemory, capacity: Int) {
            self.capacity = max(min(capacity, GuestMemory.maximumIOVectors), 1)
            // `create`, called on the subclass, makes an instance of it.
            storage = unsafeDowncast(Storage.create(minimumCapacity: self.capacity) { _ in Header(memory: memory) },
                                     to: Storage.self)
        }

        /// Appends `length` bytes at `address` (nothing for 0 bytes).
        /// - Throws: `.outOfBounds` outside RAM, `.invalidBuffer` past `maximumIOVectors` ranges.
        mutating func append(_ address: GuestPhysicalAddress, length: Int) throws(GuestMemoryError) {
            guard length > 0 else { return }
            let (memory, count) = storage.withUnsafeMutablePointerToHeader { ($0.pointee.memory, $0.pointee.count) }
            let base = try memory.pointer(at: address, length: length)
            let merge = count > 0 && address.rawValue == lastEnd
            guard merge || count < capacity else { throw .invalidBuffer("more than \(capacity) ranges") }
            storage.withUnsafeMutablePointers { header, vectors in
                if merge {
                    // SAFETY: `count - 1` is an initialised entry; the merged range is the previous
                    // one (checked) followed by this one (checked), contiguous in the one mapping.
                    vectors[count - 1].iov_len += length
                } else {
                    // SAFETY: `count` < capacity, inside the tail allocation; `base` covers
                    // `length` bytes of the mapping.
                    (vectors + count).initialize(to: iovec(iov_base: base, iov_len: length))
                    header.pointee.count = count + 1
                }
                // SAFETY: the builder is the storage's only user until `finish`.
                header.pointee.byteCount += length
            }
            lastEnd = address.rawValue &+ UInt64(length)
        }

        /// The vectors; the builder must not be used afterwards.
        func finish() -> GuestIOVectors {
            GuestIOVectors(storage: storage)
        }
    }
}

extension GuestMemory {
    /// The most iovecs one buffer may have (IOV_MAX).
    public static let maximumIOVectors = 1024

    /// The guest address of a pointer `pointer(at:length:)` returned.
    fileprivate func address(ofMapped pointer: UnsafeMutableRawPointer?) -> GuestPhysicalAddress {
        GuestPhysicalAddress(UInt64(UInt(bitPattern: pointer) &- baseAddress))
    }

    /// Validates `segments` against guest RAM (every byte inside it, in 64-bit arithmetic) and
    /// returns them as iovecs, merging segments that are contiguous in guest RAM.
    /// - Throws: `.outOfBounds` for a segment outside RAM, `.invalidBuffer` for more than
    ///   `maximumIOVectors` ranges after merging.
    public func ioVectors(_ segments: [GuestMemorySegment]) throws(GuestMemoryError) -> GuestIOVectors {
        var builder = GuestIOVectors.Builder(memory: self, capacity: segments.count)
        for segment in segments where segment.length > 0 {
            guard segment.pageNumber <= UInt64.max / GuestPhysicalAddress.pageSize,
                  let address = GuestPhysicalAddress(pageNumber: segment.pageNumber).advanced(by: UInt64(segment.offset))
            else {
                throw .outOfBounds(address: GuestPhysicalAddress(UInt64.max), length: Int(segment.length))
            }
            try builder.append(address, length: Int(segment.length))
        }
        return builder.finish()
    }

    /// The iovecs of a VMBus GPA-direct range: `byteCount` bytes starting `byteOffset` into the
    /// first of `pageNumbers`, which must be exactly ⌈(byteOffset + byteCount) / 4096⌉ pages.
    public func ioVectors(byteOffset: UInt32, byteCount: UInt32, pageNumbers: [UInt64]) throws(GuestMemoryError) -> GuestIOVectors {
        try ioVectors(byteOffset: byteOffset, byteCount: byteCount, pageNumbers: pageNumbers[...])
    }

    /// The same for pages in a slice, for example the first pages of a longer list.
    public func ioVectors(byteOffset: UInt32, byteCount: UInt32, pageNumbers: ArraySlice<UInt64>) throws(GuestMemoryError) -> GuestIOVectors {
        let pageSize = GuestPhysicalAddress.pageSize
        let end = UInt64(byteOffset) + UInt64(byteCount)
        guard UInt64(byteOffset) < pageSize, UInt64(pageNumbers.count) == (end + pageSize - 1) / pageSize else {
            throw .invalidBuffer("\(pageNumbers.count) pages for \(byteCount) bytes at offset \(byteOffset)")
        }
        var builder = GuestIOVectors.Builder(memory: self, capacity: pageNumbers.count)
        var position = UInt64(byteOffset)
        var pageStart: UInt64 = 0
        for pageNumber in pageNumbers {
            let from = max(position, pageStart)
            let to = min(end, pageStart + pageSize)
            pageStart += pageSize
            position = to
            guard to > from else { continue }
            guard pageNumber <= UInt64.max / pageSize,
                  let address = GuestPhysicalAddress(pageNumber: pageNumber).advanced(by: from % pageSize)
            else {
                throw .outOfBounds(address: GuestPhysicalAddress(UInt64.max), length: Int(to - from))
            }
            try builder.append(address, length: Int(to - from))
        }
        return builder.finish()
    }

    /// Copies `bytes` (at most the buffer's length) into the start of a guest buffer.
    /// - Returns: the bytes copied.
    @discardableResult
    public func write(_ bytes: [UInt8], to buffer: GuestIOVectors) throws(GuestMemoryError) -> Int {
        var copied = 0
        for range in buffer.ranges where copied < bytes.count {
            let count = min(range.length, bytes.count - copied)
            try write(bytes, from: copied, count: count, at: range.address)
            copied += count
        }
        return copied
    }

    /// Copies the first `count` bytes (at most the buffer's length) out of a guest buffer, once.
    public func read(from buffer: GuestIOVectors, count: Int) throws(GuestMemoryError) -> [UInt8] {
        var bytes: [UInt8] = .init(repeating: 0, count: min(max(count, 0), buffer.byteCount))
        var copied = 0
        for range in buffer.ranges where copied < bytes.count {
            let chunk = min(range.length, bytes.count - copied)
            try read(at: range.address, into: &bytes, bufferOffset: copied, count: chunk)
            copied += chunk
        }
        return bytes
    }
}
