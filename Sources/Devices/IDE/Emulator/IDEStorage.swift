/// The logical sector of every device this model emulates.
public enum ATASector {
    /// Bytes per sector.
    public static let size = 512
}

/// The disk behind an emulated IDE device: whole sectors at byte offsets, synchronously. The
/// parent puts the same back end behind it as behind the synthetic SCSI controller.
///
/// The channel only asks for ranges inside `sectorCount` sectors, at offsets that are
/// multiples of `ATASector.size`, with buffers of whole sectors; it never calls `write` on a
/// read-only disk.
public protocol IDEStorage {
    /// What a failed access reports (kept by the channel for the service to log).
    associatedtype Failure: Error

    /// Capacity in sectors.
    var sectorCount: UInt64 { get }
    /// Whether writes are refused (the device then aborts every write command).
    var isReadOnly: Bool { get }

    /// Fills all of `buffer` with the sectors starting at byte `offset`.
    mutating func read(at offset: UInt64, into buffer: inout [UInt8]) throws(Failure)
    /// Writes all of `bytes` to the sectors starting at byte `offset`.
    mutating func write(at offset: UInt64, from bytes: [UInt8]) throws(Failure)
    /// Makes every completed write durable.
    mutating func flush() throws(Failure)
}

/// A disk held in memory (for tests and scratch disks). It never fails.
public struct MemoryStorage: IDEStorage, Sendable {
    /// The disk's contents; its length is a whole number of sectors.
    public private(set) var bytes: [UInt8]
    public let isReadOnly: Bool
    /// How many times `flush` was called.
    public private(set) var flushCount = 0

    /// A zero-filled disk of `sectorCount` sectors.
    public init(sectorCount: Int, readOnly: Bool = false) {
        bytes = [UInt8](repeating: 0, count: max(0, sectorCount) * ATASector.size)
        isReadOnly = readOnly
    }

    /// A disk holding `contents`, cut down to whole sectors.
    public init(contents: [UInt8], readOnly: Bool = false) {
        bytes = Array(contents.prefix(contents.count / ATASector.size * ATASector.size))
        isReadOnly = readOnly
    }

    public var sectorCount: UInt64 { UInt64(bytes.count / ATASector.size) }

    public mutating func read(at offset: UInt64, into buffer: inout [UInt8]) throws(Never) {
        let range = clamped(offset, buffer.count)
        buffer.replaceSubrange(0..<range.count, with: bytes[range])
    }

    public mutating func write(at offset: UInt64, from source: [UInt8]) throws(Never) {
        guard !isReadOnly else { return }
        let range = clamped(offset, source.count)
        bytes.replaceSubrange(range, with: source.prefix(range.count))
    }

    public mutating func flush() throws(Never) {
        flushCount += 1
    }

    /// The part of `offset ..< offset + count` inside the disk (the channel never asks for
    /// more; this keeps a misuse from trapping).
    private func clamped(_ offset: UInt64, _ count: Int) -> Range<Int> {
        let start = Int(min(offset, UInt64(bytes.count)))
        return start..<min(bytes.count, start + max(0, count))
    }
}
