@testable import IDEEmulator

/// A sparse test disk of any size: sectors never written hold a pattern that differs per LBA
/// and per byte; written sectors are kept. It logs every access and fails the ones it is
/// told to.
struct TestDisk: IDEStorage {
    struct Failure: Error, Equatable {
        let operation: String
        let lba: UInt64
    }

    enum Access: Equatable {
        case read(lba: UInt64, sectors: Int)
        case write(lba: UInt64, sectors: Int)
        case flush
    }

    let sectorCount: UInt64
    let isReadOnly: Bool
    private(set) var written: [UInt64: [UInt8]] = [:]
    private(set) var log: [Access] = []
    /// Sectors whose reads fail (a read of a range containing one fails).
    var failingReads: Set<UInt64> = []
    /// Sectors whose writes fail.
    var failingWrites: Set<UInt64> = []
    var flushFails = false

    init(sectors: UInt64, readOnly: Bool = false) {
        sectorCount = sectors
        isReadOnly = readOnly
    }

    /// The pattern of a sector nobody wrote.
    static func pattern(lba: UInt64) -> [UInt8] {
        (0..<ATASector.size).map { UInt8(truncatingIfNeeded: lba &* 31 &+ UInt64($0) &* 7 &+ (lba >> 8) &+ (lba >> 24)) }
    }

    /// What sector `lba` holds now.
    func sector(_ lba: UInt64) -> [UInt8] { written[lba] ?? Self.pattern(lba: lba) }

    /// What sectors `lba ..< lba + count` hold now.
    func sectors(_ lba: UInt64, count: Int) -> [UInt8] {
        (0..<UInt64(count)).flatMap { sector(lba + $0) }
    }

    mutating func read(at offset: UInt64, into buffer: inout [UInt8]) throws(Failure) {
        let (lba, count) = locate(offset, buffer.count)
        log.append(.read(lba: lba, sectors: count))
        guard count > 0 else { return }
        if let bad = (lba..<(lba + UInt64(count))).first(where: failingReads.contains) {
            throw Failure(operation: "read", lba: bad)
        }
        buffer = sectors(lba, count: count)
    }

    mutating func write(at offset: UInt64, from bytes: [UInt8]) throws(Failure) {
        let (lba, count) = locate(offset, bytes.count)
        log.append(.write(lba: lba, sectors: count))
        guard count > 0 else { return }
        if let bad = (lba..<(lba + UInt64(count))).first(where: failingWrites.contains) {
            throw Failure(operation: "write", lba: bad)
        }
        for index in 0..<count {
            written[lba + UInt64(index)] = Array(bytes[(index * ATASector.size)..<((index + 1) * ATASector.size)])
        }
    }

    mutating func flush() throws(Failure) {
        log.append(.flush)
        if flushFails { throw Failure(operation: "flush", lba: 0) }
    }

    mutating func clearLog() { log.removeAll() }

    /// Accesses outside the channel's promise (whole sectors inside the disk).
    var brokenPromises: Int {
        log.filter { access in
            switch access {
            case .read(let lba, _), .write(let lba, _): lba == UInt64.max
            case .flush: false
            }
        }.count
    }

    /// The channel promises whole sectors inside the disk; a broken promise is logged with
    /// LBA `UInt64.max` (see `brokenPromises`) and not carried out.
    private func locate(_ offset: UInt64, _ count: Int) -> (UInt64, Int) {
        let size = UInt64(ATASector.size)
        guard offset % size == 0, count > 0, count % ATASector.size == 0,
              offset / size + UInt64(count / ATASector.size) <= sectorCount
        else { return (UInt64.max, 0) }
        return (offset / size, count / ATASector.size)
    }
}
