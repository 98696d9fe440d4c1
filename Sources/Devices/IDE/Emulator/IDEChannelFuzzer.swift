/// An invariant the fuzzer found broken: the step (0-based) and what was wrong.
public struct IDEInvariantViolation: Error, Equatable, Sendable, CustomStringConvertible {
    public let step: Int
    public let message: String

    public var description: String { "step \(step): \(message)" }
}

/// Drives a channel with random port accesses from `generator` (a guest that knows the
/// registers but not the protocol: plausible task files and commands mixed with random
/// values, sizes and ports, string I/O runs, resets) over a small disk that fails some
/// accesses, and checks the channel's invariants after every access. Deterministic for a
/// deterministic generator, so a failing seed replays exactly; tests run it briefly, a
/// long-form command can run it for as many steps as it likes.
public struct IDEChannelFuzzer<Generator: RandomNumberGenerator> {
    private var generator: Generator
    private var channel: IDEChannel<FaultyStorage>
    private var edges: UInt64 = 0
    private var step = 0
    private var trace: UInt64 = 0xCBF2_9CE4_8422_2325
    /// Accesses made so far.
    public var steps: Int { step }
    /// Storage reads, writes and flushes the channel made (whether or not they failed), to
    /// show a run got past the registers into data transfers.
    public var storageAccesses: Int { channel.storage.accesses }
    /// A digest of what the host saw after each access (status, edges, address registers):
    /// equal for equal seeds.
    public var fingerprint: UInt64 { trace }

    public init(generator: Generator) {
        var generator = generator
        let sizes = [0, 1, 2, 17, 63, 64, 1_008, 1_024, 70_000]
        let sectors = sizes[Int.random(in: 0..<sizes.count, using: &generator)]
        let storage = FaultyStorage(sectors: sectors, readOnly: Int.random(in: 0..<4, using: &generator) == 0,
                                    faultSeed: generator.next())
        let maximumMultiple = 1 << Int.random(in: 0...7, using: &generator)
        // Cannot fail: a power of two up to 128, and the initial block that or 0.
        let configuration = (try? IDEDiskConfiguration(
            model: "fuzz", serialNumber: "F", firmwareRevision: "0", maximumMultipleSectors: maximumMultiple,
            initialMultipleSectors: Bool.random(using: &generator) ? maximumMultiple : 0,
            writeCacheEnabledAtPowerOn: Bool.random(using: &generator))) ?? .standard
        channel = IDEChannel(storage: storage, configuration: configuration,
                             location: Bool.random(using: &generator) ? .primary : .secondary)
        // Half the runs as the controller drives it: data-in blocks after the first are read
        // when the fuzzer says so, and the channel is busy meanwhile.
        channel.loadsBlocksLater = Bool.random(using: &generator)
        self.generator = generator
    }

    /// Runs `count` more accesses, checking the invariants after each.
    public mutating func run(steps count: Int) throws(IDEInvariantViolation) {
        for _ in 0..<max(0, count) {
            try act()
            try check()
            step += 1
        }
    }

    // MARK: Actions

    private var base: UInt16 { channel.location.commandBlockBase }
    private var control: UInt16 { channel.location.controlPort }

    private mutating func random(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &generator) }
    private mutating func randomByte() -> UInt8 { UInt8.random(in: 0...255, using: &generator) }

    private static var commands: [UInt8] {
        [0x20, 0x24, 0x29, 0x30, 0x34, 0x39, 0x40, 0x42, 0x90, 0x91, 0xC4, 0xC5, 0xC6, 0xE0, 0xE1, 0xE2, 0xE3, 0xE5,
         0xE7, 0xEA, 0xEC, 0xEF]
    }

    private mutating func act() throws(IDEInvariantViolation) {
        switch random(0...21) {
        case 0, 1:
            channel.write(port: base + UInt16(random(1...7)), size: 1, value: UInt32(randomByte()))
        case 2, 3:
            programTaskFile()
        case 4, 5:
            let command = random(0...9) == 0 ? randomByte() : Self.commands[random(0...(Self.commands.count - 1))]
            channel.write(port: base + 7, size: 1, value: UInt32(command))
        case 6:
            channel.write(port: base + 6, size: 1, value: UInt32([0xA0, 0xB0, 0xE0, 0xF0, 0x40, randomByte()][random(0...5)]))
        case 7:
            channel.write(port: control, size: 1, value: UInt32([0x00, 0x02, 0x04, 0x06, 0x08, 0x0A, 0x80, randomByte()][random(0...7)]))
        case 8:
            channel.write(port: control, size: 1, value: 0x0C)
            channel.write(port: control, size: 1, value: 0x08)
        case 9:
            let port = base + UInt16(random(0...7))
            _ = try reading { $0.read(port: port, size: 1) }
        case 10:
            let port = base + 7
            let status = try reading { $0.read(port: port, size: 1) }
            if status != 0, channel.taskFile.selectsDevice1 == false, channel.interruptPending {
                throw violation("reading Status left the interrupt pending")
            }
        case 11, 12:
            let size = [2, 4][random(0...1)]
            let count = random(1...(random(0...1) == 0 ? 256 : 2_100))
            let port = base
            let bytes = try reading { $0.readString(port: port, size: size, count: count) }
            let expected = min(count, IDEChannel<FaultyStorage>.maximumStringBytes / size) * size
            if bytes.count != expected { throw violation("string read of \(count)x\(size) returned \(bytes.count) bytes") }
        case 13, 14:
            let size = [2, 4][random(0...1)]
            let count = random(0...(random(0...1) == 0 ? 512 : 4_200))
            channel.writeString(port: base, size: size, bytes: (0..<count).map { _ in randomByte() })
        case 15:
            let (port, size) = (base, [1, 2, 4][random(0...2)])
            if Bool.random(using: &generator) {
                _ = try reading { $0.read(port: port, size: size) }
            } else {
                channel.write(port: port, size: size, value: UInt32.random(in: 0...UInt32.max, using: &generator))
            }
        case 16:
            let port = UInt16(truncatingIfNeeded: Int(base) + random(-8...16))
            let size = [0, 1, 2, 3, 4, 8][random(0...5)]
            if Bool.random(using: &generator) { _ = try reading { $0.read(port: port, size: size) } }
            else { channel.write(port: port, size: size, value: UInt32.random(in: 0...UInt32.max, using: &generator)) }
        case 17:
            let port = [control, control &+ 1, control &- 1, UInt16.random(in: 0...UInt16.max, using: &generator)][random(0...3)]
            let size = [1, 2, 4][random(0...2)]
            if Bool.random(using: &generator) {
                let count = random(0...9_000)
                _ = try reading { $0.readString(port: port, size: size, count: count) }
            } else {
                channel.writeString(port: port, size: size, bytes: (0..<random(0...64)).map { _ in randomByte() })
            }
        case 18, 19, 20:
            // What a driver does: reset released, device 0 selected, a task file, a command.
            channel.write(port: control, size: 1, value: UInt32([0x08, 0x0A][random(0...1)]))
            channel.write(port: base + 6, size: 1, value: 0xE0)
            programTaskFile()
            let media: [UInt8] = [0x20, 0x24, 0x29, 0x30, 0x34, 0x39, 0xC4, 0xC5]
            let command = random(0...2) == 0 ? Self.commands[random(0...(Self.commands.count - 1))] : media[random(0...7)]
            channel.write(port: base + 7, size: 1, value: UInt32(command))
        default:
            if random(0...50) == 0 { channel.powerOnReset() } else { _ = channel.readAlternateStatus() }
        }
        // The controller's thread reads the awaited block soon, but accesses may come first.
        if channel.awaitsBlockLoad, random(0...3) != 0 { channel.loadAwaitedBlock() }
    }

    /// A read access. With `loadsBlocksLater` none reaches storage: the next data-in block is
    /// the host's to load, off the access.
    private mutating func reading<T>(_ body: (inout IDEChannel<FaultyStorage>) -> T) throws(IDEInvariantViolation) -> T {
        let before = channel.storage.accesses
        let value = body(&channel)
        if channel.loadsBlocksLater, channel.storage.accesses != before { throw violation("a read reached storage") }
        return value
    }

    /// A task file a driver might load: LBA28, LBA48 or CHS, mostly inside the disk.
    private mutating func programTaskFile() {
        let sectors = min(channel.sectors, 1 << 40)
        let lba: UInt64 = switch random(0...3) {
        case 0: sectors - min(sectors, UInt64(random(0...3)))
        case 1: UInt64(random(0...3))
        default: sectors == 0 ? 0 : UInt64.random(in: 0..<sectors, using: &generator)
        }
        let fitting = Int(min(UInt64(32), sectors - min(lba, sectors)))
        let count = random(0...3) == 0 ? [1, 2, 3, 8, 16, 17, 0, Int(randomByte())][random(0...7)] : random(1...max(1, fitting))
        let writes: [(UInt16, UInt8)]
        switch random(0...5) {
        case 0, 1, 2:
            writes = [(2, UInt8(truncatingIfNeeded: count)), (3, UInt8(truncatingIfNeeded: lba)),
                      (4, UInt8(truncatingIfNeeded: lba >> 8)), (5, UInt8(truncatingIfNeeded: lba >> 16)),
                      (6, 0xE0 | UInt8(truncatingIfNeeded: lba >> 24) & 0x0F)]
        case 3, 4:
            writes = [(1, 0), (2, UInt8(truncatingIfNeeded: count >> 8)), (3, UInt8(truncatingIfNeeded: lba >> 24)),
                      (4, UInt8(truncatingIfNeeded: lba >> 32)), (5, UInt8(truncatingIfNeeded: lba >> 40)),
                      (1, randomByte()), (2, UInt8(truncatingIfNeeded: count)), (3, UInt8(truncatingIfNeeded: lba)),
                      (4, UInt8(truncatingIfNeeded: lba >> 8)), (5, UInt8(truncatingIfNeeded: lba >> 16)), (6, 0x40)]
        default:
            writes = [(2, UInt8(truncatingIfNeeded: count)), (3, UInt8(random(0...64))), (4, UInt8(random(0...3))),
                      (5, 0), (6, 0xA0 | UInt8(random(0...15)))]
        }
        for (offset, value) in writes { channel.write(port: base + offset, size: 1, value: UInt32(value)) }
    }

    // MARK: Invariants

    private func violation(_ message: String) -> IDEInvariantViolation {
        IDEInvariantViolation(step: step, message: message)
    }

    private mutating func check() throws(IDEInvariantViolation) {
        if let problem = channel.storage.problem { throw violation(problem) }
        let status = channel.readAlternateStatus()
        if channel.resetAsserted {
            if status != ATAStatus.busy { throw violation("status 0x\(String(status, radix: 16)) during SRST") }
        } else if channel.taskFile.selectsDevice1 {
            if status != 0 { throw violation("absent device 1 shows status 0x\(String(status, radix: 16))") }
        } else if let transfer = channel.transfer, transfer.awaitsLoad {
            if !channel.loadsBlocksLater { throw violation("a block awaited by a channel that loads at once") }
            if transfer.direction != .toHost || transfer.position != transfer.block.count || transfer.sectorsAfterBlock == 0 {
                throw violation("a block awaited before the last one was taken whole")
            }
            if status != ATAStatus.busy { throw violation("status 0x\(String(status, radix: 16)) while a block is read") }
        } else {
            if status & ATAStatus.ready == 0 { throw violation("DRDY clear outside reset") }
            if status & ATAStatus.busy != 0 { throw violation("BSY outside reset") }
            if status & ATAStatus.dataRequest != 0, status & ATAStatus.error != 0 { throw violation("DRQ with ERR") }
            if status & ATAStatus.deviceFault != 0 { throw violation("DF set") }
        }
        if (channel.deviceStatus & ATAStatus.dataRequest != 0) != (channel.transfer != nil && !channel.awaitsBlockLoad),
           !channel.resetAsserted {
            throw violation("DRQ does not match the data phase")
        }
        if let transfer = channel.transfer {
            if transfer.position > transfer.block.count || transfer.position < 0 { throw violation("data position past its block") }
            if transfer.block.count % ATASector.size != 0 || transfer.block.isEmpty { throw violation("block of \(transfer.block.count) bytes") }
            if transfer.blockSectors > transfer.sectorsPerBlock { throw violation("block larger than the DRQ block size") }
            if transfer.sectorsAfterBlock < 0 { throw violation("negative sectors left") }
            if case .identify = transfer.addressing {} else if transfer.blockLBA + UInt64(transfer.blockSectors)
                + UInt64(transfer.sectorsAfterBlock) > channel.sectors {
                throw violation("transfer runs past the disk")
            }
            if transfer.direction == .fromHost, channel.storage.isReadOnly { throw violation("data-out phase on a read-only disk") }
        }
        let multiple = channel.multipleSectors
        if multiple != 0, multiple.nonzeroBitCount != 1 || multiple > channel.configuration.maximumMultipleSectors {
            throw violation("multiple setting \(multiple)")
        }
        let expectedLine = channel.interruptPending && channel.deviceControl & ATADeviceControl.interruptDisable == 0
            && !channel.taskFile.selectsDevice1 && !channel.resetAsserted
        if channel.interruptLine != expectedLine { throw violation("line level disagrees with latch, nIEN and selection") }
        if channel.interruptRisingEdges < edges { throw violation("edge count went backwards") }
        edges = channel.interruptRisingEdges
        for value in [UInt64(status), edges, UInt64(channel.taskFile.lba48), UInt64(channel.taskFile.error)] {
            trace = (trace ^ value) &* 0x100_0000_01B3  // FNV-1a
        }
    }
}

/// The fuzzer's disk: in memory, failing a pseudo-random eighth of its accesses, and noting
/// any access the channel promised never to make.
struct FaultyStorage: IDEStorage, Sendable {
    struct Fault: Error {}

    private var disk: MemoryStorage
    private var faultState: UInt64
    let isReadOnly: Bool
    /// The first broken promise seen.
    private(set) var problem: String?
    private(set) var accesses = 0

    init(sectors: Int, readOnly: Bool, faultSeed: UInt64) {
        disk = MemoryStorage(sectorCount: sectors)
        isReadOnly = readOnly
        faultState = faultSeed | 1
    }

    var sectorCount: UInt64 { disk.sectorCount }

    mutating func read(at offset: UInt64, into buffer: inout [UInt8]) throws(Fault) {
        vet(offset, buffer.count, writing: false)
        if fails() { throw Fault() }
        disk.read(at: offset, into: &buffer)
    }

    mutating func write(at offset: UInt64, from bytes: [UInt8]) throws(Fault) {
        vet(offset, bytes.count, writing: true)
        if fails() { throw Fault() }
        disk.write(at: offset, from: bytes)
    }

    mutating func flush() throws(Fault) {
        accesses += 1
        if fails() { throw Fault() }
        disk.flush()
    }

    private mutating func vet(_ offset: UInt64, _ count: Int, writing: Bool) {
        accesses += 1
        guard problem == nil else { return }
        let size = UInt64(ATASector.size)
        if writing, isReadOnly { problem = "write to a read-only disk" }
        if offset % size != 0 || count == 0 || count % ATASector.size != 0 { problem = "access of \(count) bytes at \(offset)" }
        if offset / size + UInt64(count) / size > sectorCount { problem = "access of \(count) bytes at \(offset) past the disk" }
    }

    /// xorshift64: one access in eight fails.
    private mutating func fails() -> Bool {
        faultState ^= faultState << 13
        faultState ^= faultState >> 7
        faultState ^= faultState << 17
        return faultState & 7 == 0
    }
}
