/// A 32-bit word of a ring's 4 KiB control page, named by its index in u32 units
/// (Docs/hyperv-interface.md §8.2, `struct hv_ring_buffer`).
public struct RingControlWord: RawRepresentable, Hashable, Sendable {
    /// Index of the word in the control page; its byte offset is `rawValue * 4`.
    public var rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// write_index @0: byte offset in the data area where the producer writes next.
    public static let writeIndex = RingControlWord(rawValue: 0)
    /// read_index @4: byte offset in the data area where the consumer reads next.
    public static let readIndex = RingControlWord(rawValue: 1)
    /// interrupt_mask @8: set by the consumer while it polls, so the producer does not signal.
    public static let interruptMask = RingControlWord(rawValue: 2)
    /// pending_send_sz @12: set by a blocked producer; the consumer signals once that much is free.
    public static let pendingSendSize = RingControlWord(rawValue: 3)
    /// feature_bits @64; bit 0 advertises pending_send_sz support (`RingLayout.featurePendingSendSize`).
    public static let featureBits = RingControlWord(rawValue: 16)

    /// The byte offset of this word in the control page.
    public var byteOffset: Int { rawValue * 4 }
}

/// The memory ordering of a control-word access.
public enum RingOrdering: Sendable {
    /// No ordering with respect to other accesses.
    case relaxed
    /// Later accesses cannot move before this load (pairs with `releasing`).
    case acquiring
    /// Earlier accesses cannot move after this store.
    case releasing
    /// Totally ordered with every other sequentially consistent access.
    case sequentiallyConsistent
}

/// Sizes and rules of a VMBus ring buffer (Docs/hyperv-interface.md §8).
public enum RingLayout {
    /// The control page that precedes the data area.
    public static let controlPageSize = VMBusConstants.pageSize
    /// Number of u32 words in the control page.
    public static let controlWordCount = controlPageSize / 4
    /// Packets, indices and sizes are multiples of 8 bytes.
    public static let alignment = 8
    /// The u64 after every packet: the producer's write index at the packet's start, shifted left 32.
    public static let trailerSize = 8
    /// Feature bit 0: the ring honours pending_send_sz. Linux sets it in both ring headers.
    public static let featurePendingSendSize: UInt32 = 1

    /// Whether `dataSize` can back a ring: positive, a multiple of 8, and indexable by a u32.
    @inlinable
    public static func isValidDataSize(_ dataSize: Int) -> Bool {
        dataSize > 0 && dataSize % alignment == 0 && dataSize <= Int(UInt32.max)
    }

    /// `raw` as a data-area offset if it is below `dataSize` and 8-aligned, else `nil`.
    @inlinable
    public static func index(_ raw: UInt32, dataSize: Int) -> Int? {
        guard let index = Int(exactly: raw), index < dataSize, index % alignment == 0 else { return nil }
        return index
    }

    /// Bytes the producer may still use when the indices are `write` and `read`; equal
    /// indices mean an empty ring, so the result is then `dataSize`.
    @inlinable
    public static func bytesFree(write: Int, read: Int, dataSize: Int) -> Int {
        read > write ? read - write : dataSize - (write - read)
    }

    /// Bytes the consumer has yet to read when the indices are `write` and `read`.
    @inlinable
    public static func bytesUsed(write: Int, read: Int, dataSize: Int) -> Int {
        write >= read ? write - read : dataSize - (read - write)
    }

    /// Ring bytes a packet occupies, trailer included: the 16-byte descriptor, `headerBytes`
    /// of extra descriptor, the payload padded to 8, and the trailer. `nil` if the descriptor's
    /// u16 length8 cannot describe it.
    @inlinable
    public static func packetRingBytes(headerBytes: Int, payloadBytes: Int) -> Int? {
        guard headerBytes >= 0, payloadBytes >= 0, headerBytes % alignment == 0,
            payloadBytes <= maximumPacketLength, headerBytes <= maximumPacketLength
        else { return nil }
        let padded = (payloadBytes + alignment - 1) / alignment * alignment
        let length = PacketDescriptor.size + headerBytes + padded
        guard length <= maximumPacketLength else { return nil }
        return length + trailerSize
    }

    /// The longest packet (descriptor through padding) a u16 length8 can describe.
    public static let maximumPacketLength = Int(UInt16.max) * alignment
}
