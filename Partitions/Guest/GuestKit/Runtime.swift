// The C runtime the Embedded Swift standard library links against: an allocator over the
// static heap in entry.S (exported to runtime.c), and putchar for print().

/// A size-class allocator: blocks of 2^k bytes (k = 5...22) carved from the heap, each with a
/// 16-byte header recording its class, and recycled through per-class free lists.
enum Heap {
    nonisolated(unsafe) static var next: UInt64 = 0
    nonisolated(unsafe) static var end: UInt64 = 0
    nonisolated(unsafe) static var freeLists = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0),
                                                UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0),
                                                UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
    static let headerSize: UInt64 = 16
    static let smallestClass = 5
    static let largestClass = 22

    static func freeList(_ sizeClass: Int) -> UnsafeMutablePointer<UInt64> {
        withUnsafeMutablePointer(to: &freeLists) { tuple in
            UnsafeMutableRawPointer(tuple).assumingMemoryBound(to: UInt64.self) + (sizeClass - smallestClass)
        }
    }

    static func allocate(size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        if next == 0 {
            next = _heapStart()
            end = _heapEnd()
        }
        let needed = UInt64(size) + headerSize + UInt64(max(alignment, 16)) - 16
        var sizeClass = smallestClass
        while (UInt64(1) << UInt64(sizeClass)) < needed {
            sizeClass += 1
            if sizeClass > largestClass { return nil }
        }
        let blockSize = UInt64(1) << UInt64(sizeClass)
        var block = freeList(sizeClass).pointee
        if block != 0 {
            freeList(sizeClass).pointee = physical(block).load(as: UInt64.self)
        } else {
            block = (next + 15) & ~15
            guard block + blockSize <= end else { return nil }
            next = block + blockSize
        }
        var user = block + headerSize
        let align = UInt64(max(alignment, 16))
        user = (user + align - 1) & ~(align - 1)
        // The header just below the user pointer: block start and class.
        physical(user - 16).storeBytes(of: block, as: UInt64.self)
        physical(user - 8).storeBytes(of: UInt64(sizeClass), as: UInt64.self)
        return physical(user)
    }

    static func release(_ pointer: UnsafeMutableRawPointer) {
        let user = UInt64(UInt(bitPattern: pointer))
        let block = physical(user - 16).load(as: UInt64.self)
        let sizeClass = Int(physical(user - 8).load(as: UInt64.self))
        guard sizeClass >= smallestClass && sizeClass <= largestClass else { return }
        physical(block).storeBytes(of: freeList(sizeClass).pointee, as: UInt64.self)
        freeList(sizeClass).pointee = block
    }
}

// posix_memalign and free are reserved names in Swift; runtime.c defines them and calls these.
@_cdecl("guest_heap_allocate")
public func guestHeapAllocate(_ size: Int, _ alignment: Int) -> UnsafeMutableRawPointer? {
    Heap.allocate(size: size, alignment: alignment)
}

@_cdecl("guest_heap_release")
public func guestHeapRelease(_ pointer: UnsafeMutableRawPointer?) {
    if let pointer { Heap.release(pointer) }
}

@_cdecl("putchar")
public func putchar(_ character: CInt) -> CInt {
    Console.write(byte: UInt8(truncatingIfNeeded: character))
    return character
}

@_cdecl("arc4random_buf")
public func arc4random_buf(_ buffer: UnsafeMutableRawPointer, _ count: Int) {
    var state = CPU.timestamp() | 1
    for index in 0..<count {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        buffer.storeBytes(of: UInt8(truncatingIfNeeded: state), toByteOffset: index, as: UInt8.self)
    }
}
