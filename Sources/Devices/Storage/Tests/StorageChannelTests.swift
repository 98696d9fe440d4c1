import DiskBackend
import Glibc
import GuestMemory
import LinuxSupport
import StorageProtocol
import StorageVSC
import StorageVSP
import Testing
import VMBusHost
import VMBusProtocol
import VSPTestSupport

/// The storage VSP on its channels: the guest's `StorageVSC` against the real sessions, worker
/// threads, rings, io_uring queues and image files.
@Suite("Storage channels: StorageVSC against the storage VSP over real rings and files")
struct StorageChannelTests {
    static let disk0 = StorageSettings.Disk(path: "", lun: 0, model: "hv test disk")

    func rig(_ disks: [(String, UInt64, StorageSettings.Disk)] = [("d0.img", 8 << 20, disk0)], subChannels: Int? = 2,
             maxTransferKiB: Int? = nil) throws -> StorageRig {
        try StorageRig(disks: disks.map { (name: $0.0, size: $0.1, settings: $0.2) }, subChannels: subChannels,
                       maxTransferKiB: maxTransferKiB)
    }

    @Test("Linux's initialization negotiates each version the guest proposes first, and reports it",
          arguments: [StorageProtocolVersion.win10, .win8_1, .win8])
    func negotiatesEachVersion(version: StorageProtocolVersion) throws {
        let rig = try rig()
        var vsc = try rig.openChannel()
        let answered = vsc.initialize(versions: [StorageProtocolVersion(rawValue: 0x0700), version])
        let properties = try #require(answered)
        #expect(vsc.version == version)
        #expect(properties.maximumSubChannels == 2)
        #expect(properties.flags.contains(.supportsMultiChannel))
        #expect(properties.maximumTransferBytes == 0x40000)
        #expect(rig.host.reported[rig.vsp.factPrefix + "protocol"] == "\(version.major).\(version.minor)")
    }

    @Test("Discovery finds every LUN with its size and model, as Linux's scan would")
    func discoversDisks() throws {
        let rig = try rig([("a.img", 4 << 20, StorageSettings.Disk(path: "", lun: 0, model: "first")),
                           ("b.img", 2 << 20, StorageSettings.Disk(path: "", lun: 3, readOnly: true, blockSize: 4096))])
        var vsc = try rig.openChannel()
        #expect(vsc.initialize() != nil)
        let disks = vsc.discover(scratch: StorageRig.buffer(0), memory: rig.guestMemory)
        #expect(disks.map(\.lun) == [0, 3])
        #expect(disks.map(\.capacityBytes) == [4 << 20, 2 << 20])
        #expect(disks.map(\.blockSize) == [512, 4096])
        #expect(disks.first.map { String(decoding: $0.product, as: UTF8.self) } == "first           ")
        #expect(disks.first.map { String(decoding: $0.vendor, as: UTF8.self) } == "Msft    ")
    }

    @Test("Written data reaches the image file, survives a flush, and reads back; FUA writes too")
    func writeFlushReadBack() throws {
        let rig = try rig()
        var vsc = try rig.openChannel()
        #expect(vsc.initialize() != nil)
        let found = vsc.discover(scratch: StorageRig.buffer(0), memory: rig.guestMemory)
        let disk = try #require(found.first)
        let result = vsc.verify(disk: disk, regionBytes: 1 << 20, chunk: 64 << 10, seed: 7, buffer: StorageRig.buffer(1),
                                memory: rig.guestMemory)
        #expect(result.passed && result.flushed, "\(result)")
        #expect(fileBytes(rig.path("d0.img"), offset: 512 << 10, count: 4096) == StoragePattern.bytes(at: 512 << 10, count: 4096, seed: 7))
        // A FUA write of one block.
        rig.guestMemory.fillPattern(at: StorageRig.buffer(2), length: 512, diskOffset: 7 << 20, seed: 9)
        let fua = StorageRequest.transfer(write: true, lun: 0, lba: (7 << 20) / 512, blocks: 1,
                                          buffer: GPARange(address: StorageRig.buffer(2), length: 512), forceUnitAccess: true)
        #expect(vsc.run(fua)?.succeeded == true)
        #expect(fileBytes(rig.path("d0.img"), offset: 7 << 20, count: 512) == StoragePattern.bytes(at: 7 << 20, count: 512, seed: 9))
    }

    /// A request that `run` gave up on still completes, later: the next `run` must not take that
    /// completion for its own request's (a guest that did read data not yet there).
    @Test("The late completion of a request run() gave up on is not taken for the next request's")
    func aLateCompletionIsNotTakenForTheNextRequest() throws {
        let rig = try rig()
        var vsc = try rig.openChannel()
        #expect(vsc.initialize() != nil)
        let large = GPARange(address: StorageRig.buffer(1), length: 4096)
        #expect(vsc.run(.transfer(write: false, lun: 0, lba: 0, blocks: 8, buffer: large), timeoutNanoseconds: 0) == nil,
                "given up on at once")
        usleep(100_000)  // its completion is in the ring by now
        let small = GPARange(address: StorageRig.buffer(2), length: 512)
        let completion = vsc.run(.transfer(write: false, lun: 0, lba: 8, blocks: 1, buffer: small))
        #expect(completion?.succeeded == true)
        #expect(completion?.transferred == 512, "its own completion, not the 4,096-byte read's")
        #expect(vsc.inFlight == 0)
    }

    @Test("Requests with many in flight, spread over the primary channel and two sub-channels, all complete")
    func subChannelsCarryIO() throws {
        let rig = try rig()
        var primary = try rig.openChannel()
        #expect(primary.initialize() != nil)
        let created = primary.createSubChannels(2)
        #expect(created)
        // The VSP asked the bus for two sub-channel offers, after the completion.
        let deadline = MonotonicClock.nanoseconds() + 5_000_000_000
        while rig.guests[0].subChannelRequests.isEmpty, MonotonicClock.nanoseconds() < deadline { usleep(1000) }
        #expect(rig.guests[0].subChannelRequests == [2])
        let found = primary.discover(scratch: StorageRig.buffer(0), memory: rig.guestMemory)
        let disk = try #require(found.first)
        var vscs = [primary, try rig.openChannel(1), try rig.openChannel(2)]
        #expect(vscs[1].version == primary.version)
        let buffers = (0..<32).map { StorageRig.buffer(1 + $0, size: 64 << 10) }
        for pattern in [StorageWorkload.Pattern.randomWrite, .randomRead, .write, .read] {
            let workload = StorageWorkload(pattern: pattern, blockSize: 4096, queueDepth: 32, durationNanoseconds: 200_000_000,
                                           regionBytes: 4 << 20)
            let result = workload.run(disk: disk, on: &vscs, buffers: buffers) { usleep(100) }
            #expect(result.failures == 0 && result.operations > 32, "\(pattern.name): \(result.operations) operations, \(result.failures) failed")
            #expect(vscs.allSatisfy { $0.inFlight == 0 })
        }
        #expect(rig.host.reported[rig.vsp.factPrefix + "channels"] == "3")
        #expect(vscs.allSatisfy { $0.staged > 0 })
        // A queue slot keeps its channel: one request at a time uses one channel only.
        let before = vscs.map(\.staged)
        let single = StorageWorkload(pattern: .randomRead, blockSize: 4096, queueDepth: 1, durationNanoseconds: 50_000_000,
                                     regionBytes: 4 << 20)
        let result = single.run(disk: disk, on: &vscs, buffers: buffers) { usleep(100) }
        #expect(result.failures == 0 && result.operations > 0)
        #expect(vscs[0].staged - before[0] == result.operations && vscs[1].staged == before[1] && vscs[2].staged == before[2])
    }

    @Test("A second CREATE_SUB_CHANNELS beyond the limit is refused; a sub-channel before negotiation is refused")
    func subChannelLimits() throws {
        let rig = try rig(subChannels: 1)
        #expect(throws: FakeGuest.HarnessError.self) { _ = try rig.openChannel(1) }
        var primary = try rig.openChannel()
        #expect(primary.initialize() != nil)
        let first = primary.createSubChannels(1)
        let second = primary.createSubChannels(1)
        #expect(first && !second)
    }

    @Test("Hot-added disks are announced with ENUMERATE_BUS and appear; hot-removed ones answer INVALID_LUN")
    func hotAddAndRemove() throws {
        let rig = try rig()
        var vsc = try rig.openChannel()
        #expect(vsc.initialize() != nil)
        _ = vsc.discover(scratch: StorageRig.buffer(0), memory: rig.guestMemory)
        _ = try DiskImage.create(at: rig.path("hot.img"), size: 1 << 20)
        var added = rig.settings
        added.disks.append(StorageSettings.Disk(path: rig.path("hot.img"), lun: 5))
        try rig.apply(added)
        let deadline = MonotonicClock.nanoseconds() + 5_000_000_000
        while vsc.busChanges == 0, MonotonicClock.nanoseconds() < deadline {
            _ = vsc.poll { _ in }
            usleep(1000)
        }
        #expect(vsc.busChanges == 1)
        #expect(vsc.discover(scratch: StorageRig.buffer(0), memory: rig.guestMemory).map(\.lun) == [0, 5])
        try rig.apply(StorageSettings(disks: [added.disks[1]], subChannels: 2))
        while vsc.busChanges == 1, MonotonicClock.nanoseconds() < deadline + 5_000_000_000 {
            _ = vsc.poll { _ in }
            usleep(1000)
        }
        #expect(vsc.busChanges == 2)
        let probe = vsc.run(StorageRequest(lun: 0, cdb: TestUnitReadyCDB().bytes, direction: .noData))
        #expect(probe?.srbStatus.code == .invalidLUN)
        #expect(vsc.discover(scratch: StorageRig.buffer(0), memory: rig.guestMemory).map(\.lun) == [5])
    }

    @Test("An unchanged disk keeps running across a change of another disk")
    func unchangedDiskKeepsItsUnit() throws {
        let rig = try rig()
        let before = try #require(rig.vsp.disks.first?.value.unit)
        _ = try DiskImage.create(at: rig.path("other.img"), size: 1 << 20)
        var settings = rig.settings
        settings.disks.append(StorageSettings.Disk(path: rig.path("other.img"), lun: 1))
        try rig.apply(settings)
        #expect(rig.vsp.disks[StorageController.Address(target: 0, lun: 0)]?.unit == before)
        #expect(throws: StorageVSPError.self) { try rig.apply(StorageSettings(disks: settings.disks, subChannels: 3)) }
    }

    @Test("A read-only disk refuses writes with DATA PROTECT and its file is untouched")
    func readOnlyDisk() throws {
        let rig = try rig([("ro.img", 1 << 20, StorageSettings.Disk(path: "", lun: 0, readOnly: true))])
        var vsc = try rig.openChannel()
        #expect(vsc.initialize() != nil)
        rig.guestMemory.fillPattern(at: StorageRig.buffer(1), length: 4096, diskOffset: 0, seed: 1)
        let write = vsc.run(.transfer(write: true, lun: 0, lba: 0, blocks: 8, buffer: GPARange(address: StorageRig.buffer(1), length: 4096)))
        #expect(write?.scsiStatus == .checkCondition)
        #expect(write.flatMap { try? SenseData(parsing: $0.sense) }?.key == .dataProtect)
        #expect(fileBytes(rig.path("ro.img"), offset: 0, count: 4096) == [UInt8](repeating: 0, count: 4096))
    }

    // MARK: Hostile guests

    @Test("Page lists outside the partition's RAM fail the request as invalid, and the channel goes on")
    func pagesOutsideRAM() throws {
        let rig = try rig()
        var vsc = try rig.openChannel()
        #expect(vsc.initialize() != nil)
        let outside = UInt64(StorageRig.ramBytes) / 4096
        for pfns in [[outside], [outside + 1000], [UInt64.max / 4096], [0x10, outside]] {
            let range = GPARange(byteCount: UInt32(pfns.count * 4096), byteOffset: 0, pfns: pfns)
            for write in [false, true] {
                let completion = vsc.run(.transfer(write: write, lun: 0, lba: 0, blocks: UInt32(pfns.count * 8), buffer: range))
                #expect(completion?.srbStatus.code == .invalidRequest, "\(pfns) write=\(write)")
            }
        }
        let inquiry = StorageRequest(lun: 0, cdb: InquiryCDB().bytes, direction: .read,
                                     buffer: GPARange(byteCount: 36, byteOffset: 0, pfns: [outside]))
        #expect(vsc.run(inquiry)?.srbStatus.code == .invalidRequest)
        // The same channel still serves good requests.
        #expect(vsc.run(StorageRequest(lun: 0, cdb: TestUnitReadyCDB().bytes, direction: .noData))?.succeeded == true)
    }

    @Test("Lengths that disagree with the page list, bad CDB lengths, LBAs past the end and oversized transfers are refused")
    func malformedRequests() throws {
        let rig = try rig()
        var vsc = try rig.openChannel()
        #expect(vsc.initialize() != nil)
        let buffer = StorageRig.buffer(1)
        // Fewer pages than the length needs.
        var short = GPARange(address: buffer, length: 8192)
        short.pfns.removeLast()
        #expect(vsc.run(.transfer(write: false, lun: 0, lba: 0, blocks: 16, buffer: short))?.srbStatus.code == .invalidRequest)
        // A buffer shorter than the transfer the CDB asks for.
        let small = StorageRequest.transfer(write: false, lun: 0, lba: 0, blocks: 16, buffer: GPARange(address: buffer, length: 4096))
        #expect(vsc.run(small)?.succeeded == false)
        // A 6-byte CDB for a 10-byte opcode.
        let truncated = StorageRequest(lun: 0, cdb: Array(ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 1).bytes.prefix(6)),
                                       direction: .read, buffer: GPARange(address: buffer, length: 512))
        #expect(vsc.run(truncated)?.srbStatus.code == .invalidRequest)
        // Past the end of the 8 MiB disk.
        let beyond = vsc.run(.transfer(write: false, lun: 0, lba: (8 << 20) / 512, blocks: 1, buffer: GPARange(address: buffer, length: 512)))
        #expect(beyond.flatMap { try? SenseData(parsing: $0.sense) }?.additional == .logicalBlockAddressOutOfRange)
        let straddling = vsc.run(.transfer(write: true, lun: 0, lba: (8 << 20) / 512 - 1, blocks: 2, buffer: GPARange(address: buffer, length: 1024)))
        #expect(straddling.flatMap { try? SenseData(parsing: $0.sense) }?.additional == .logicalBlockAddressOutOfRange)
        // More than max_transfer_bytes.
        let huge = StorageRequest.transfer(write: false, lun: 0, lba: 0, blocks: 1024, buffer: GPARange(address: buffer, length: 512 << 10))
        #expect(vsc.run(huge)?.srbStatus.code == .invalidRequest)
        // The channel still works.
        #expect(vsc.run(StorageRequest(lun: 0, cdb: TestUnitReadyCDB().bytes, direction: .noData))?.succeeded == true)
    }

    @Test("Answers served from the page cache are published every fourth, or at once when they moved 128 KiB")
    func inlineAnswersArePublishedByCountOrBytes() {
        var publishing = InlineAnswerPublishing()
        // 4 KiB reads: every fourth answer.
        #expect((0..<8).map { _ in publishing.answered(movedBytes: 4096) } == [false, false, false, true, false, false, false, true])
        // A 1 MiB read: at once, and the count starts again after it.
        #expect(publishing.answered(movedBytes: 4096) == false)
        #expect(publishing.answered(movedBytes: 1 << 20) == true)
        #expect(publishing.answered(movedBytes: 4096) == false)
        // Smaller reads that add up to 128 KiB: once they do.
        publishing.reset()
        #expect([64 << 10, 32 << 10, 32 << 10].map { publishing.answered(movedBytes: $0) } == [false, false, true])
        // A failed request moved nothing; after a publish everything counts afresh.
        publishing.reset()
        #expect([0, -5, 0].map { publishing.answered(movedBytes: $0) } == [false, false, false])
        publishing.reset()
        #expect(publishing.answered(movedBytes: (128 << 10) - 1) == false)
        // Several answers reaped together count as that many.
        publishing.reset()
        #expect(publishing.answered(3, movedBytes: 3 * 4096) == false)
        #expect(publishing.answered(2, movedBytes: 2 * 4096) == true)
        #expect(publishing.answered(3, movedBytes: 3 * 4096) == false)
    }

    @Test("A guest that stops reading its ring stops its own channel only: packets wait in its ring, nothing is queued")
    func guestThatDoesNotReadIsHeld() throws {
        let rig = try rig()
        var vsc = try rig.openChannel(ringPages: 16, incomingPages: 2)
        #expect(vsc.initialize() != nil)
        let buffer = StorageRig.buffer(1)
        // Fill the guest→host ring with reads and never read an answer.
        var staged = 0
        while staged < 400, vsc.stage(.transfer(write: false, lun: 0, lba: 0, blocks: 1, buffer: GPARange(address: buffer, length: 512)),
                                      tag: UInt64(staged)) {
            staged += 1
            vsc.publish()
        }
        usleep(200_000)
        // The host→guest ring (4 KiB of data) holds fewer than 50 completions: the VSP took only
        // what it could answer and left the rest in the guest's ring.
        #expect(rig.guests[0].failure == nil)
        var answered = 0
        let deadline = MonotonicClock.nanoseconds() + 10_000_000_000
        while answered < staged, MonotonicClock.nanoseconds() < deadline {
            answered += vsc.poll { completion in #expect(completion.succeeded) }
            usleep(100)
        }
        #expect(answered == staged)
    }

    @Test("Closing a channel with requests in flight drains them; requests after close get nothing and harm nothing")
    func closeWithRequestsInFlight() throws {
        let rig = try rig()
        var vsc = try rig.openChannel()
        #expect(vsc.initialize() != nil)
        for slot in 0..<16 {
            _ = vsc.stage(.transfer(write: true, lun: 0, lba: UInt64(slot) * 128, blocks: 128,
                                    buffer: GPARange(address: StorageRig.buffer(slot, size: 64 << 10), length: 64 << 10)),
                          tag: UInt64(slot))
        }
        vsc.publish()
        rig.guests[0].close()
        // Writing into a closed channel's ring is only the guest's own memory.
        _ = vsc.stage(.transfer(write: false, lun: 0, lba: 0, blocks: 1, buffer: GPARange(address: StorageRig.buffer(0), length: 512)), tag: 99)
        vsc.publish()
        #expect(rig.host.reported[rig.vsp.factPrefix + "channels"] == "0")
        // A new channel to the same controller works.
        var again = try rig.openChannel(ringPages: 8)
        #expect(again.initialize() != nil)
    }
}
