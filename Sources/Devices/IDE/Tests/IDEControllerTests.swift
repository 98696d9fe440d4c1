import DeviceHost
import DiskBackend
import Glibc
import GuestMemory
import HyperV
import IDEVSC
import LinuxSupport
import Logging
import Synchronization
import Testing
import TestSupport
@testable import IDEEmulator

/// The partition an emulated device serves, played by the test: ports and IRQ lines recorded,
/// the IRQ a real eventfd.
final class IDETestContext: DeviceContext {
    let partitionName = "ide-test"
    let processorCount: UInt32 = 1
    let logger: Logger
    let memory: GuestMemory
    let irq: EventFD
    let intercepted = Mutex<[Range<UInt16>]>([])
    let pins = Mutex<[UInt8]>([])

    init(logger: Logger = Logger(label: "ide-test")) throws {
        self.logger = logger
        memory = try GuestMemory.create(name: "ide-test", size: 1 << 20)
        irq = try EventFD()
    }

    func raise(vp: UInt32, sint: UInt8) {}
    func registerEventConnection(_ connection: ConnectionID, event: EventFD) {}
    func unregisterEventConnection(_ connection: ConnectionID) {}
    func report(_ facts: [String: String]) {}
    func referenceTime() -> UInt64 { 0 }
    func interceptPorts(_ ports: Range<UInt16>, accessesPerSecond: UInt32) { intercepted.withLock { $0.append(ports) } }
    func requestInterruptLine(pin: UInt8, completion: @escaping @Sendable (EventFD?) -> Void) {
        pins.withLock { $0.append(pin) }
        completion(irq)
    }
    func consoleOutput(_ bytes: [UInt8]) {}
}

/// The guest's ATA driver's port I/O, delivered to a controller the way the parent delivers the
/// root's forwarded accesses: one call per access, string instructions as whole runs.
struct ControllerPorts<Storage: IDEStorage & Sendable>: ATAPortIO where Storage.Failure: Sendable {
    let controller: IDEController<Storage>
    mutating func in8(_ port: UInt16) -> UInt8 { UInt8(truncatingIfNeeded: controller.portRead(port: port, size: 1)) }
    mutating func out8(_ port: UInt16, _ value: UInt8) { controller.portWrite(port: port, size: 1, value: UInt32(value)) }
    mutating func inWords(_ port: UInt16, into buffer: inout [UInt8], offset: Int, words: Int) {
        var done = 0
        while done < words {
            let run = min(words - done, 2048)
            let bytes = controller.portReadString(port: port, size: 2, count: run)
            buffer.replaceSubrange((offset + 2 * done)..<(offset + 2 * (done + run)), with: bytes)
            done += run
        }
    }
    mutating func outWords(_ port: UInt16, from buffer: [UInt8], offset: Int, words: Int) {
        var done = 0
        while done < words {
            let run = min(words - done, 2048)
            controller.portWriteString(port: port, size: 2, bytes: Array(buffer[(offset + 2 * done)..<(offset + 2 * (done + run))]))
            done += run
        }
    }
    func timestamp() -> UInt64 { MonotonicClock.nanoseconds() }
    func ticks(nanoseconds: UInt64) -> UInt64 { nanoseconds }
}

/// A disk whose flush (and, from a given sector on, reads) waits until the test lets it go, to
/// watch the channel while storage is slow.
final class GatedDisk: IDEStorage, @unchecked Sendable {
    // SAFETY: `bytes` is touched only by the one thread that owns the channel at a time (the
    // controller hands it over under its lock); the gate is a semaphore.
    typealias Failure = SystemError
    var bytes: [UInt8]
    let gate = EventFDSemaphore()
    let flushes = Atomic<Int>(0)
    /// Reads at or past this sector wait at the gate too.
    let gatedReadsFrom: Int
    /// Reads that waited at the gate and then went on.
    let gatedReads = Atomic<Int>(0)

    init(sectors: Int, gatingReadsFrom sector: Int = .max) {
        bytes = (0..<(sectors * 512)).map { UInt8(truncatingIfNeeded: $0 / 512 &* 31 &+ $0) }
        gatedReadsFrom = sector
    }

    var sectorCount: UInt64 { UInt64(bytes.count / 512) }
    var isReadOnly: Bool { false }
    func read(at offset: UInt64, into buffer: inout [UInt8]) throws(SystemError) {
        if offset / 512 >= gatedReadsFrom {
            gate.wait()
            gatedReads.add(1, ordering: .relaxed)
        }
        buffer.replaceSubrange(0..<buffer.count, with: bytes[Int(offset)..<(Int(offset) + buffer.count)])
    }
    func write(at offset: UInt64, from source: [UInt8]) throws(SystemError) {
        bytes.replaceSubrange(Int(offset)..<(Int(offset) + source.count), with: source)
    }
    func flush() throws(SystemError) {
        gate.wait()
        flushes.add(1, ordering: .relaxed)
    }
}

extension IDEController {
    /// Alternate Status once BSY has cleared (or after 10 s), read as a driver polls it.
    func statusOnceNotBusy() -> UInt32 {
        var status: UInt32 = 0x80
        let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
        while status & 0x80 != 0, MonotonicClock.nanoseconds() < deadline { status = portRead(port: 0x3F6, size: 1) }
        return status
    }
}

/// A blocking wait on an eventfd (at most 10 s), released by `signal`.
final class EventFDSemaphore: Sendable {
    let event: EventFD?
    init() { event = try? EventFD() }
    func wait() {
        guard let event else { return }
        _ = try? Poll.wait(on: [event.rawValue], timeoutMilliseconds: 10_000)
        _ = event.consume()
    }
    func signal() { event?.signal() }
}

@Suite("The emulated IDE channel as a partition's device")
struct IDEControllerTests {
    @Test("The guest's ATA PIO driver writes, flushes and reads back a disk image through the controller; the file holds the data")
    func guestDriverRoundTripThroughTheImage() throws {
        let directory = "/tmp/hv-ide-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        mkdir(directory, 0o700)
        defer { unlink("\(directory)/disk.img"); rmdir(directory) }
        let image = try DiskImage.create(at: "\(directory)/disk.img", size: 4 << 20)
        let context = try IDETestContext()
        let controller = try IDEController(channel: IDEChannel(storage: ImageStorage(image: image)), context: context)
        controller.attach()
        #expect(context.intercepted.withLock { $0 } == [0x1F0..<0x1F8, 0x3F6..<0x3F7])
        #expect(context.pins.withLock { $0 } == [14])
        var driver = ATADriver(bus: ControllerPorts(controller: controller))
        let probed = driver.probe()
        #expect(probed)
        #expect(driver.sectors == (4 << 20) / 512)
        #expect(driver.lba48 && driver.multiple == 16)
        #expect(String(decoding: driver.model, as: UTF8.self).hasPrefix("hv virtual IDE disk"))
        var data = (0..<(300 * 512)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 9) }
        let wrote = driver.write(lba: 77, count: 300, from: data, offset: 0)
        let flushed = driver.flush()
        var back = [UInt8](repeating: 0, count: data.count)
        let read = driver.read(lba: 77, count: 300, into: &back, offset: 0)
        #expect(wrote && flushed && read)
        #expect(back == data)
        var file = [UInt8](repeating: 0, count: data.count)
        try image.read(at: 77 * 512, into: &file)
        #expect(file == data)
        // Past the end: the device aborts with IDNF, the driver reports it.
        data = [UInt8](repeating: 0, count: 512)
        let beyond = driver.read(lba: (4 << 20) / 512, count: 1, into: &data, offset: 0)
        #expect(!beyond)
        controller.stop()
    }

    @Test("While a slow command runs the channel reads BSY at once, later writes wait their turn, and the IRQ follows completion")
    func slowCommandsAnswerBusy() throws {
        let context = try IDETestContext()
        let disk = GatedDisk(sectors: 1024)
        let controller = try IDEController(channel: IDEChannel(storage: disk), context: context)
        controller.attach()
        _ = context.irq.consume()
        controller.portWrite(port: 0x1F6, size: 1, value: 0xE0)
        controller.portWrite(port: 0x1F7, size: 1, value: 0xE7)   // FLUSH CACHE
        let start = MonotonicClock.nanoseconds()
        #expect(controller.portRead(port: 0x1F7, size: 1) == 0x80, "Status reads BSY while the flush runs")
        #expect(controller.portRead(port: 0x3F6, size: 1) == 0x80, "and so does Alternate Status")
        #expect(controller.portRead(port: 0x1F2, size: 1) == 0x80, "every command block register reads as Status")
        #expect(controller.portRead(port: 0x1F0, size: 2) == 0xFFFF, "the data register floats")
        #expect(MonotonicClock.nanoseconds() - start < 1_000_000_000, "the reads did not wait for the flush")
        // A write arriving meanwhile waits for the command, in order.
        controller.portWrite(port: 0x1F2, size: 1, value: 0x07)
        #expect(disk.flushes.load(ordering: .relaxed) == 0)
        disk.gate.signal()
        let status = controller.statusOnceNotBusy()
        #expect(status == 0x50, "DRDY|DSC after the flush")
        #expect(disk.flushes.load(ordering: .relaxed) == 1)
        #expect(controller.portRead(port: 0x1F2, size: 1) == 0x07, "the deferred write landed after the command")
        #expect(try Poll.wait(on: [context.irq.rawValue], timeoutMilliseconds: 5000).first == true, "IRQ 14 edge after completion")
        controller.stop()
    }

    /// A controller on a disk whose reads from sector 9 on wait at its gate, with READ SECTORS of
    /// `sectors` sectors from sector 8 issued.
    static func readingPastTheGate(sectors: UInt32) throws -> (IDETestContext, GatedDisk, IDEController<GatedDisk>) {
        let context = try IDETestContext()
        let disk = GatedDisk(sectors: 64, gatingReadsFrom: 9)
        let controller = try IDEController(channel: IDEChannel(storage: disk), context: context)
        controller.attach()
        for (port, value) in [(0x1F2, sectors), (0x1F3, 8), (0x1F4, 0), (0x1F5, 0), (0x1F6, 0xE0), (0x1F7, 0x20)] as [(UInt16, UInt32)] {
            controller.portWrite(port: port, size: 1, value: value)
        }
        return (context, disk, controller)
    }

    /// A guest processor waits on every port read, so the control thread must not wait for
    /// storage inside one: the read that takes a block's last word leaves the next block to the
    /// controller's thread, and the device is busy until it is in.
    @Test("A read that ends a data-in block answers at once; the device reads BSY until the controller's thread has the next block")
    func theNextDataInBlockIsReadOffTheControlThread() throws {
        let (context, disk, controller) = try Self.readingPastTheGate(sectors: 2)
        #expect(controller.statusOnceNotBusy() == 0x58, "DRQ for the first block")
        #expect(controller.portRead(port: 0x1F7, size: 1) == 0x58, "Status, which clears the block's interrupt")
        let start = MonotonicClock.nanoseconds()
        #expect(controller.portReadString(port: 0x1F0, size: 2, count: 256) == Array(disk.bytes[(8 * 512)..<(9 * 512)]))
        #expect(controller.portRead(port: 0x1F7, size: 1) == 0x80, "BSY while the next block is read")
        #expect(controller.portRead(port: 0x1F0, size: 2) == 0xFFFF, "the data register floats")
        #expect(MonotonicClock.nanoseconds() - start < 1_000_000_000, "the reads did not wait for storage")
        _ = context.irq.consume()
        disk.gate.signal()
        #expect(try Poll.wait(on: [context.irq.rawValue], timeoutMilliseconds: 5000).first == true, "an IRQ 14 edge for it")
        #expect(controller.portRead(port: 0x3F6, size: 1) == 0x58, "DRQ, not BSY, by the time the interrupt comes")
        #expect(controller.portReadString(port: 0x1F0, size: 2, count: 256) == Array(disk.bytes[(9 * 512)..<(10 * 512)]))
        #expect(controller.portRead(port: 0x1F7, size: 1) == 0x50, "the command is done")
        controller.stop()
    }

    @Test("A software reset written while the next data-in block is read lands after the read: the command ends, no data phase is left")
    func aResetWhileTheNextBlockIsReadEndsTheCommand() throws {
        let (_, disk, controller) = try Self.readingPastTheGate(sectors: 3)
        #expect(controller.statusOnceNotBusy() == 0x58)
        _ = controller.portReadString(port: 0x1F0, size: 2, count: 256)
        controller.portWrite(port: 0x3F6, size: 1, value: 0x0C)   // SRST (and libata's obsolete bit 3), then released
        controller.portWrite(port: 0x3F6, size: 1, value: 0x08)
        #expect(controller.portRead(port: 0x3F6, size: 1) == 0x80, "busy until the block is in")
        disk.gate.signal()
        #expect(controller.statusOnceNotBusy() == 0x50, "DRDY|DSC after the reset, no DRQ")
        #expect(disk.gatedReads.load(ordering: .relaxed) == 1, "the awaited block was read before the reset landed")
        #expect(controller.portRead(port: 0x1F0, size: 2) == 0xFFFF, "no data phase left")
        controller.stop()
    }

    /// Port writes are posted, so a guest can write on while a command runs: past the queue's
    /// limit the writes are dropped (a drive ignores them while BSY) and logged sparingly.
    @Test("Writes beyond the queue while a command runs are dropped, and logged for the first 8 and then at powers of two")
    func writesBeyondTheQueueWhileBusyAreDroppedAndLoggedSparingly() throws {
        let counter = LineCounter()
        let context = try IDETestContext(logger: Logger(label: "ide-test") { _ in counter })
        let disk = GatedDisk(sectors: 64)
        let controller = try IDEController(channel: IDEChannel(storage: disk), context: context)
        controller.attach()
        controller.portWrite(port: 0x1F6, size: 1, value: 0xE0)
        controller.portWrite(port: 0x1F7, size: 1, value: 0xE7)   // FLUSH CACHE, held at the gate
        let limit = IDEController<GatedDisk>.deferredLimit
        for index in 0..<(limit + 1000) {
            controller.portWrite(port: 0x1F3, size: 1, value: UInt32(truncatingIfNeeded: index))
        }
        disk.gate.signal()
        let status = controller.statusOnceNotBusy()
        #expect(status == 0x50)
        // About a thousand dropped (1,000 or 1,001, as the controller's thread may already have
        // taken the command off the queue): lines for the 1st to 8th, 16th, 32nd … 512th.
        #expect(counter.lines(containing: "IDE write dropped") == 14)
        controller.stop()
    }

    @Test("A string write that completes a data-out block is seen to reach storage (and so runs on the controller's thread), byte-wide elements counted as the words they move")
    func stringWritesThatEndABlockReachStorage() {
        var channel = IDEChannel(storage: GatedDisk(sectors: 8))
        for (port, value) in [(0x1F2, 1), (0x1F3, 0), (0x1F4, 0), (0x1F5, 0), (0x1F6, 0xE0), (0x1F7, 0x30)] {
            channel.write(port: UInt16(port), size: 1, value: UInt32(value))   // WRITE SECTORS, one sector
        }
        #expect(channel.dataOutBytesUntilBlockEnd == 512)
        typealias Controller = IDEController<GatedDisk>
        #expect(Controller.reachesStorage(.string(port: 0x1F0, size: 1, bytes: [UInt8](repeating: 0, count: 256)), channel))
        #expect(!Controller.reachesStorage(.string(port: 0x1F0, size: 1, bytes: [UInt8](repeating: 0, count: 255)), channel))
        #expect(Controller.reachesStorage(.string(port: 0x1F0, size: 2, bytes: [UInt8](repeating: 0, count: 512)), channel))
        #expect(!Controller.reachesStorage(.string(port: 0x1F0, size: 2, bytes: [UInt8](repeating: 0, count: 510)), channel))
        #expect(Controller.reachesStorage(.string(port: 0x1F0, size: 4, bytes: [UInt8](repeating: 0, count: 512)), channel))
    }

    @Test("String reads and writes of the data register move whole runs")
    func stringIOMovesRuns() throws {
        let context = try IDETestContext()
        let disk = GatedDisk(sectors: 64)
        for index in 0..<disk.bytes.count { disk.bytes[index] = UInt8(truncatingIfNeeded: index / 512) }
        let controller = try IDEController(channel: IDEChannel(storage: disk), context: context)
        var ports = ControllerPorts(controller: controller)
        ports.out8(0x3F6, 0x02)
        ports.out8(0x1F2, 16)
        ports.out8(0x1F3, 4)
        ports.out8(0x1F4, 0)
        ports.out8(0x1F5, 0)
        ports.out8(0x1F6, 0xE0)
        ports.out8(0x1F7, 0xC4)   // READ MULTIPLE: one 16-sector DRQ block
        var status: UInt8 = 0x80
        while status & 0x80 != 0 { status = ports.in8(0x1F7) }
        #expect(status == 0x58)
        // One exit moves at most a page: the 8 KiB block takes two.
        let first = controller.portReadString(port: 0x1F0, size: 2, count: 4096)
        #expect(first.count == 4096)
        let block = first + controller.portReadString(port: 0x1F0, size: 2, count: 2048)
        let expected: [UInt8] = (0..<8192).map { (index: Int) -> UInt8 in UInt8(4 + index / 512) }
        let matches = block == expected
        #expect(matches)
        #expect(ports.in8(0x1F7) == 0x50)
        controller.stop()
    }
}
