import HyperV
import VMBusProtocol

/// The bench device: a channel of this project's own for measuring VSC↔VSP throughput and
/// latency over VMBus rings (not a Hyper-V device; documented in Docs/benchmarks.md).
///
/// The guest (VSC) drives a plan of phases; each starts with `phaseStart` and ends with
/// `phaseEnd`. The host (VSP) measures throughput with its own clock, verifies running
/// checksums, answers pings and produces data on request, and reports each phase as facts.
/// Every packet is an in-band packet whose payload starts with a `BenchHeader`.
public enum BenchProtocol {
    /// The device class GUID (this project's).
    public static let interfaceType = GUID("6a5d3e4f-1b2c-4d8e-9f70-a1b2c3d4e5f6")!

    /// The event connection the raw-chain baseline signals: an ioeventfd like a channel's,
    /// but its listener only raises SINT 2, with no ring or event flag in the way.
    public static func rawChainConnectionID(childRelID: UInt32) -> ConnectionID {
        ConnectionID(childRelID | 0x4000)
    }

    /// The smallest message: the header plus a sequence number.
    public static let minimumMessageSize = BenchHeader.size + 8
}

extension ArraySlice where Element == UInt8 {
    /// Reads a little-endian integer `offset` bytes into the slice, or `nil` if it does not
    /// fit; no copy is made (the bench hot path parses every packet).
    @inlinable
    func littleEndian<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T? {
        let size = T.bitWidth / 8
        guard offset >= 0, size <= count, offset <= count - size else { return nil }
        var value: T = 0
        var index = size
        let base = startIndex + offset
        while index > 0 {
            index -= 1
            value = (value << 8) | T(truncatingIfNeeded: self[base + index])
        }
        return value
    }
}

/// What a packet is for.
public struct BenchKind: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Guest → host: a phase begins (`BenchPhase` follows the header).
    public static let phaseStart = BenchKind(rawValue: 1)
    /// Guest → host in sink phases: `size` bytes of data.
    public static let data = BenchKind(rawValue: 2)
    /// Guest → host: the phase is over (`BenchPhaseEnd` follows).
    public static let phaseEnd = BenchKind(rawValue: 3)
    /// Guest → host in echo phases; answered by `pong` with the same payload.
    public static let ping = BenchKind(rawValue: 4)
    public static let pong = BenchKind(rawValue: 5)
    /// Host → guest in source phases: `size` bytes of data.
    public static let sourceData = BenchKind(rawValue: 6)
    /// Host → guest: what the host measured for a phase (`BenchPhaseResult` follows).
    public static let phaseResult = BenchKind(rawValue: 7)
}

/// What a phase measures.
public struct BenchMode: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Guest → host throughput, batched, with interrupt suppression.
    public static let throughput = BenchMode(rawValue: 1)
    /// Host → guest throughput (the guest asks, the host produces).
    public static let source = BenchMode(rawValue: 2)
    /// Round trips where each side sleeps until signalled.
    public static let signalledRoundTrip = BenchMode(rawValue: 3)
    /// Round trips where both sides poll the rings.
    public static let polledRoundTrip = BenchMode(rawValue: 4)
    /// The raw signalling chain (ioeventfd signal, eventfd wake, MSI injection), no rings.
    public static let rawChain = BenchMode(rawValue: 5)
    /// Signalled round trips where the guest halts its processor until the answer's interrupt,
    /// as an idle, latency-sensitive guest does (the host side is the same as `signalledRoundTrip`).
    public static let haltingRoundTrip = BenchMode(rawValue: 6)

    /// The name used in reports and JSON.
    public var name: String {
        switch self {
        case .throughput: "throughput"
        case .source: "source"
        case .signalledRoundTrip: "signalled"
        case .polledRoundTrip: "polled"
        case .rawChain: "raw-chain"
        case .haltingRoundTrip: "halting"
        default: "mode\(rawValue)"
        }
    }
}

/// u32 kind @0, u32 phase @4, u32 sequence @8, u32 reserved @12.
public struct BenchHeader: Hashable, Sendable {
    public static let size = 16
    public var kind: BenchKind
    public var phase: UInt32
    public var sequence: UInt32

    public init(kind: BenchKind, phase: UInt32, sequence: UInt32 = 0) {
        self.kind = kind
        self.phase = phase
        self.sequence = sequence
    }

    @inlinable
    public init?(parsing bytes: ArraySlice<UInt8>) {
        guard bytes.count >= Self.size, let kind = bytes.littleEndian(UInt32.self, at: 0),
              let phase = bytes.littleEndian(UInt32.self, at: 4),
              let sequence = bytes.littleEndian(UInt32.self, at: 8) else { return nil }
        self.init(kind: BenchKind(rawValue: kind), phase: phase, sequence: sequence)
    }

    /// Writes the header into the first 16 bytes of `bytes`.
    public func store(into bytes: inout [UInt8]) {
        bytes.storeLittleEndian(kind.rawValue, at: 0)
        bytes.storeLittleEndian(phase, at: 4)
        bytes.storeLittleEndian(sequence, at: 8)
        bytes.storeLittleEndian(UInt32(0), at: 12)
    }
}

/// After a `phaseStart` header: u32 mode, u32 message size, u32 count, u32 flags.
public struct BenchPhase: Hashable, Sendable {
    public static let size = 16
    /// Flag bit 0: both sides keep running checksums of the data and compare them at the end.
    public static let verifyFlag: UInt32 = 1

    /// Whether data is checksummed in this phase.
    public var verifies: Bool { flags & Self.verifyFlag != 0 }
    public var mode: BenchMode
    /// Bytes per message, header included.
    public var messageSize: UInt32
    /// Messages (or round trips) in the phase.
    public var count: UInt32
    public var flags: UInt32

    public init(mode: BenchMode, messageSize: UInt32, count: UInt32, flags: UInt32 = 0) {
        self.mode = mode
        self.messageSize = messageSize
        self.count = count
        self.flags = flags
    }

    public init?(parsing bytes: ArraySlice<UInt8>) {
        guard let mode = bytes.littleEndian(UInt32.self, at: 0), let size = bytes.littleEndian(UInt32.self, at: 4),
              let count = bytes.littleEndian(UInt32.self, at: 8), let flags = bytes.littleEndian(UInt32.self, at: 12)
        else { return nil }
        self.init(mode: BenchMode(rawValue: mode), messageSize: size, count: count, flags: flags)
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.size)
        out.storeLittleEndian(mode.rawValue, at: 0)
        out.storeLittleEndian(messageSize, at: 4)
        out.storeLittleEndian(count, at: 8)
        out.storeLittleEndian(flags, at: 12)
        return out
    }
}

/// After a `phaseEnd` header: u64 messages, u64 checksum, u64 guest nanoseconds, u64 p50 ns,
/// u64 p99 ns (latencies measured by the guest, 0 where they do not apply).
public struct BenchPhaseEnd: Hashable, Sendable {
    public static let size = 40
    public var messages: UInt64
    public var checksum: UInt64
    public var guestNanoseconds: UInt64
    public var p50Nanoseconds: UInt64
    public var p99Nanoseconds: UInt64

    public init(messages: UInt64, checksum: UInt64, guestNanoseconds: UInt64, p50Nanoseconds: UInt64, p99Nanoseconds: UInt64) {
        self.messages = messages
        self.checksum = checksum
        self.guestNanoseconds = guestNanoseconds
        self.p50Nanoseconds = p50Nanoseconds
        self.p99Nanoseconds = p99Nanoseconds
    }

    public init?(parsing bytes: ArraySlice<UInt8>) {
        guard let messages = bytes.littleEndian(UInt64.self, at: 0), let checksum = bytes.littleEndian(UInt64.self, at: 8),
              let guest = bytes.littleEndian(UInt64.self, at: 16), let p50 = bytes.littleEndian(UInt64.self, at: 24),
              let p99 = bytes.littleEndian(UInt64.self, at: 32) else { return nil }
        self.init(messages: messages, checksum: checksum, guestNanoseconds: guest, p50Nanoseconds: p50, p99Nanoseconds: p99)
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.size)
        out.storeLittleEndian(messages, at: 0)
        out.storeLittleEndian(checksum, at: 8)
        out.storeLittleEndian(guestNanoseconds, at: 16)
        out.storeLittleEndian(p50Nanoseconds, at: 24)
        out.storeLittleEndian(p99Nanoseconds, at: 32)
        return out
    }
}

/// After a `phaseResult` header: u64 messages the host counted, u64 host nanoseconds,
/// u32 intact (1 if every checksum matched).
public struct BenchPhaseResult: Hashable, Sendable {
    public static let size = 20
    public var messages: UInt64
    public var hostNanoseconds: UInt64
    public var intact: Bool

    public init(messages: UInt64, hostNanoseconds: UInt64, intact: Bool) {
        self.messages = messages
        self.hostNanoseconds = hostNanoseconds
        self.intact = intact
    }

    public init?(parsing bytes: ArraySlice<UInt8>) {
        guard let messages = bytes.littleEndian(UInt64.self, at: 0), let nanoseconds = bytes.littleEndian(UInt64.self, at: 8),
              let intact = bytes.littleEndian(UInt32.self, at: 16) else { return nil }
        self.init(messages: messages, hostNanoseconds: nanoseconds, intact: intact == 1)
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.size)
        out.storeLittleEndian(messages, at: 0)
        out.storeLittleEndian(hostNanoseconds, at: 8)
        out.storeLittleEndian(UInt32(intact ? 1 : 0), at: 16)
        return out
    }
}

/// The data pattern and running checksum both sides use to prove data arrived intact.
public enum BenchPattern {
    /// Fills `bytes[start..<end]` with a pattern derived from `sequence`.
    @inlinable
    public static func fill(_ bytes: inout [UInt8], from start: Int, to end: Int, sequence: UInt32) {
        var state = UInt64(sequence) &* 0x9E37_79B9_7F4A_7C15 | 1
        var index = start
        while index < end {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            bytes[index] = UInt8(truncatingIfNeeded: state)
            index += 1
        }
    }

    /// Folds `bytes` into `checksum` (order-sensitive): each whole 8-byte word, read
    /// little-endian, then each remaining byte, is XORed in and multiplied by the 64-bit FNV
    /// prime. Words are loaded directly (unaligned loads are fine), fast enough to verify
    /// gigabytes; the value is the same as assembling each word from its bytes.
    @inlinable
    public static func checksum(_ checksum: UInt64, _ bytes: ArraySlice<UInt8>) -> UInt64 {
        bytes.withUnsafeBytes { raw in
            var value = checksum
            let wordBytes = raw.count & ~7
            var offset = 0
            while offset < wordBytes {
                // SAFETY: offset + 8 <= wordBytes <= raw.count.
                let word = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                value = (value ^ word) &* 0x0000_0100_0000_01B3
                offset += 8
            }
            while offset < raw.count {
                value = (value ^ UInt64(raw[offset])) &* 0x0000_0100_0000_01B3
                offset += 1
            }
            return value
        }
    }

    /// The starting value of a running checksum.
    public static let seed: UInt64 = 0xCBF2_9CE4_8422_2325
}
