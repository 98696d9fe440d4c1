import Glibc
import StorageProtocol
import VMBusProtocol

/// A packet from the guest→host ring as the storage server needs it.
public struct StorageIncomingPacket: Hashable, Sendable {
    /// The GPA-direct buffer of a packet, as the driver found it.
    public enum Buffer: Hashable, Sendable {
        /// Not a GPA-direct packet.
        case none
        /// The one range the header described.
        case range(GPARange)
        /// The header could not be parsed; the request is answered as invalid.
        case malformed(StorageProtocolError)
    }

    public var type: PacketType
    public var flags: PacketFlags
    public var transactionID: UInt64
    /// The bytes the `vstor_packet` lies in (for a packet from the ring, the whole packet, so
    /// that taking it apart copies nothing) and where it lies in them.
    public private(set) var bytes: [UInt8]
    public private(set) var payloadRange: Range<Int>
    public var buffer: Buffer

    /// The bytes from the descriptor's data offset to the packet's end (the `vstor_packet`).
    public var payload: [UInt8] {
        get { payloadRange == bytes.indices ? bytes : Array(bytes[payloadRange]) }
        set {
            bytes = newValue
            payloadRange = newValue.indices
        }
    }

    public init(type: PacketType, flags: PacketFlags, transactionID: UInt64, payload: [UInt8], buffer: Buffer = .none) {
        self.type = type
        self.flags = flags
        self.transactionID = transactionID
        bytes = payload
        payloadRange = payload.indices
        self.buffer = buffer
    }

    /// Splits a packet copied out of the ring (`RingReader.next`): its payload and, for
    /// GPA-direct packets, the single-range header (at most `maximumPages` pages). Never
    /// throws: a bad header becomes `.malformed` so that the request is still answered.
    public init(descriptor: PacketDescriptor, packet: [UInt8], maximumPages: Int) {
        let payloadStart = min(descriptor.payloadOffset, packet.count)
        let payloadEnd = max(payloadStart, min(descriptor.totalLength, packet.count))
        if descriptor.type == .gpaDirect {
            do {
                let header = try StorageGPADirectHeader(parsing: packet, from: min(PacketDescriptor.size, payloadStart),
                                                        to: payloadStart, maximumPages: maximumPages)
                buffer = .range(header.range)
            } catch {
                buffer = .malformed(error)
            }
        } else {
            buffer = .none
        }
        type = descriptor.type
        flags = descriptor.flags
        transactionID = descriptor.transactionID
        bytes = packet
        payloadRange = payloadStart..<payloadEnd
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.type == rhs.type && lhs.flags == rhs.flags && lhs.transactionID == rhs.transactionID && lhs.buffer == rhs.buffer
            && lhs.bytes[lhs.payloadRange].elementsEqual(rhs.bytes[rhs.payloadRange])
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(type)
        hasher.combine(flags)
        hasher.combine(transactionID)
        hasher.combine(buffer)
        for byte in bytes[payloadRange] { hasher.combine(byte) }
    }
}

/// A packet for the host→guest ring: always a full 64-byte `vstor_packet`, because Linux drops
/// shorter ones with a non-zero transaction ID (`storvsc_on_channel_callback`).
public struct StorageOutgoingPacket: Hashable, Sendable {
    public var type: PacketType
    public var flags: PacketFlags
    public var transactionID: UInt64
    /// The packet, kept as a value (its bytes are inline), so that answering a request
    /// allocates nothing; the driver stores it into its own buffer for the ring. Equality
    /// compares its fields, `bodyLength` included (52 in every answer the server builds).
    public var vstor: VStorPacket

    /// The 64 bytes on the wire, in a new array on every read: for tests and tools, not the
    /// data path (which uses `vstor.store(into:at:)`).
    public var payload: [UInt8] { vstor.bytes }

    /// A completion (COMP, type 11) echoing `transactionID`.
    public static func completion(_ packet: VStorPacket, transactionID: UInt64) -> StorageOutgoingPacket {
        StorageOutgoingPacket(type: .completion, flags: [], transactionID: transactionID, vstor: packet)
    }

    /// An unsolicited in-band packet (transaction ID 0).
    public static func notification(_ packet: VStorPacket) -> StorageOutgoingPacket {
        StorageOutgoingPacket(type: .inband, flags: [], transactionID: StorageChannelConstants.unsolicitedTransactionID,
                              vstor: packet)
    }
}

/// Identifies one request the driver is carrying out; stale or repeated tokens are ignored.
public struct StorageRequestToken: Hashable, Sendable, CustomStringConvertible {
    public var slot: UInt32
    public var generation: UInt32

    public init(slot: UInt32, generation: UInt32) {
        self.slot = slot
        self.generation = generation
    }

    /// The token as one integer, for example a `DiskRequest` tag.
    public var rawValue: UInt64 { UInt64(slot) << 32 | UInt64(generation) }

    /// The token a `rawValue` came from.
    public init(rawValue: UInt64) {
        self.init(slot: UInt32(truncatingIfNeeded: rawValue >> 32), generation: UInt32(truncatingIfNeeded: rawValue))
    }
    public var description: String { "request \(slot).\(generation)" }
}

/// Work the driver carries out for an EXECUTE_SRB and then reports with
/// `StorageServer.complete` (or `parameterListArrived`).
public struct StorageIORequest: Hashable, Sendable {
    public enum Operation: Hashable, Sendable {
        /// Copy these bytes (already cut to the buffer) to the start of the guest buffer;
        /// report how many were copied.
        case copyToGuest([UInt8])
        /// Read the first `length` bytes of the guest buffer (an UNMAP parameter list) and pass
        /// them to `parameterListArrived`.
        case readParameterList(length: Int)
        /// Read `length` bytes at image offset `offset` into the guest buffer.
        case read(offset: UInt64, length: Int, forceUnitAccess: Bool)
        /// Write `length` bytes from the guest buffer at image offset `offset`; with FUA make
        /// them durable before completing.
        case write(offset: UInt64, length: Int, forceUnitAccess: Bool)
        /// Make every completed write durable.
        case flush
        /// Punch holes for these ranges.
        case unmap([ByteRange])
    }

    public var token: StorageRequestToken
    /// The guest's transaction ID (opaque; echoed in the completion).
    public var transactionID: UInt64
    public var address: StorageController.Address
    /// The unit the command went to; `nil` only for data-in copies answered on behalf of an
    /// absent unit (INQUIRY, REPORT LUNS, REQUEST SENSE).
    public var unit: StorageController.UnitID?
    public var operation: Operation
    /// The guest buffer: one range whose page count matches its offset and length, at least as
    /// long as the transfer. Its pages are not yet checked against guest RAM; the driver does
    /// that when it maps them (`GuestMemory.ioVectors`), and reports `.guestMemory` if they
    /// are not all RAM.
    public var buffer: GPARange?
}

/// How the driver's part of a request ended.
public enum StorageIOResult: Hashable, Sendable {
    /// Done; `byteCount` bytes were moved (for copies and transfers).
    case completed(byteCount: Int)
    case failed(StorageIOFailure)
}

/// Why the driver's part of a request failed; each maps to the sense a disk would report.
public enum StorageIOFailure: Hashable, Sendable {
    /// The back end could not read or write the data (EIO): MEDIUM ERROR.
    case mediumError
    /// The image's file system is full (ENOSPC, EDQUOT): DATA PROTECT, SPACE ALLOCATION
    /// FAILED WRITE PROTECT.
    case outOfSpace
    /// The guest buffer is not all guest RAM: the request block is invalid.
    case guestMemory
    /// Anything else: HARDWARE ERROR, INTERNAL TARGET FAILURE.
    case deviceFailure
}

/// What the storage server asks the driver to do, in order.
public enum StorageAction: Hashable, Sendable {
    /// Write this packet to the host→guest ring.
    case send(StorageOutgoingPacket)
    /// Carry out this request, then call `complete` (or `parameterListArrived`).
    case execute(StorageIORequest)
    /// Offer this many sub-channels of the device (same class and instance GUIDs,
    /// sub-channel indices continuing from the ones offered before).
    case createSubChannels(UInt16)
    /// The guest broke the protocol; the packet was answered negatively or, if it did not ask
    /// for an answer, ignored. For logs.
    case protocolViolation(String)
}

extension StorageIOFailure {
    /// The failure a back end's errno stands for.
    public init(errno: Int32) {
        switch errno {
        case EIO: self = .mediumError
        case ENOSPC, EDQUOT: self = .outOfSpace
        case EFAULT: self = .guestMemory
        default: self = .deviceFailure
        }
    }
}
