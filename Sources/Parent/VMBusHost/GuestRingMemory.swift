import GuestMemory
import VMBusProtocol

/// One ring buffer direction in guest RAM, described by GPADL pages: a control page, then data
/// pages in ring order (Docs/hyperv-interface.md §8.1).
///
/// Linux maps the data area twice so wrap-around is contiguous for it; the host instead walks
/// the page list, with a fast path when the pages are contiguous in guest RAM (Linux allocates
/// ring pages with `alloc_pages`, so they usually are). All access goes through `GuestMemory`'s
/// bounds-checked, read-once accessors; control words are atomics.
public struct GuestRingMemory: RingMemory, Sendable {
    let memory: GuestMemory
    let control: GuestPhysicalAddress
    let dataPages: [UInt64]
    /// The data area's first byte when its pages are contiguous.
    let contiguousBase: GuestPhysicalAddress?
    public let dataSize: Int

    /// - Parameter pages: the ring's page frame numbers: control page first, at least one data page.
    /// - Throws: if any page is outside guest RAM.
    public init(memory: GuestMemory, pages: ArraySlice<UInt64>) throws(GuestMemoryError) {
        precondition(pages.count >= 2, "a ring has a control page and at least one data page")
        let pageSize = UInt64(VMBusConstants.pageSize)
        for page in pages {
            let address = GuestPhysicalAddress(pageNumber: page)
            guard page < UInt64.max / pageSize, memory.contains(address, length: VMBusConstants.pageSize) else {
                throw .outOfBounds(address: address, length: VMBusConstants.pageSize)
            }
        }
        self.memory = memory
        control = GuestPhysicalAddress(pageNumber: pages[pages.startIndex])
        dataPages = Array(pages.dropFirst())
        dataSize = dataPages.count * VMBusConstants.pageSize
        let first = dataPages[0]
        let contiguous = dataPages.enumerated().allSatisfy { $0.element == first + UInt64($0.offset) }
        contiguousBase = contiguous ? GuestPhysicalAddress(pageNumber: first) : nil
    }

    public func loadControl(_ word: RingControlWord, ordering: RingOrdering) -> UInt32 {
        // The control page was validated in init, so the access cannot fail.
        (try? memory.atomicLoad(UInt32.self, at: address(of: word), ordering: ordering.shared)) ?? 0
    }

    public func storeControl(_ word: RingControlWord, _ value: UInt32, ordering: RingOrdering) {
        try? memory.atomicStore(value, at: address(of: word), ordering: ordering.shared)
    }

    public func readData(at offset: Int, into buffer: inout [UInt8], bufferOffset: Int, count: Int) {
        if let contiguousBase {
            try? memory.read(at: GuestPhysicalAddress(contiguousBase.rawValue + UInt64(offset)), into: &buffer,
                             bufferOffset: bufferOffset, count: count)
            return
        }
        var done = 0
        while done < count {
            let (address, chunk) = piece(offset + done, remaining: count - done)
            try? memory.read(at: address, into: &buffer, bufferOffset: bufferOffset + done, count: chunk)
            done += chunk
        }
    }

    public func writeData(at offset: Int, from buffer: [UInt8], bufferOffset: Int, count: Int) {
        if let contiguousBase {
            try? memory.write(buffer, from: bufferOffset, count: count,
                              at: GuestPhysicalAddress(contiguousBase.rawValue + UInt64(offset)))
            return
        }
        var done = 0
        while done < count {
            let (address, chunk) = piece(offset + done, remaining: count - done)
            try? memory.write(buffer, from: bufferOffset + done, count: chunk, at: address)
            done += chunk
        }
    }

    public func fullBarrier() { GuestMemory.fullBarrier() }

    private func address(of word: RingControlWord) -> GuestPhysicalAddress {
        GuestPhysicalAddress(control.rawValue + UInt64(word.byteOffset))
    }

    /// The guest address of data offset `offset` and how many bytes remain on that page.
    private func piece(_ offset: Int, remaining: Int) -> (GuestPhysicalAddress, Int) {
        let page = offset / VMBusConstants.pageSize
        let within = offset % VMBusConstants.pageSize
        let address = GuestPhysicalAddress(pageNumber: dataPages[page]).rawValue + UInt64(within)
        return (GuestPhysicalAddress(address), min(remaining, VMBusConstants.pageSize - within))
    }
}

extension RingOrdering {
    var shared: SharedMemoryOrdering {
        switch self {
        case .relaxed: .relaxed
        case .acquiring: .acquiring
        case .releasing: .releasing
        case .sequentiallyConsistent: .sequentiallyConsistent
        }
    }
}
