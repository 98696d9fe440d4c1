import Foundation
import GuestMemory
import LinuxSupport
import StorageProtocol
import StorageVSC
import StorageVSP
import Testing
import TestSupport
import VMBusProtocol
import VSPTestSupport

/// The storage VSP driven in memory by generated and mutated packets, the way a hostile guest
/// would send them: through its ring, to the real session, worker, disk queues and image files.
/// Every packet that asks for an answer must get exactly one, within a deadline; the channel
/// must stay up (no packet here corrupts the ring itself); nothing may trap.
///
/// Short form in `swift test`; the long form runs with
/// `HV_STORAGE_FUZZ_REQUESTS=1000000 HV_STORAGE_FUZZ_SEED=<n> swift test --filter StorageSessionFuzz`.
@Suite("Storage VSP fuzzing over its channel (seeded; HV_STORAGE_FUZZ_REQUESTS for the long form)")
struct StorageSessionFuzzTests {
    static var requests: Int { ProcessInfo.processInfo.environment["HV_STORAGE_FUZZ_REQUESTS"].flatMap(Int.init) ?? 4000 }
    static var seed: UInt64 { ProcessInfo.processInfo.environment["HV_STORAGE_FUZZ_SEED"].flatMap(UInt64.init) ?? 0x5107_F022 }

    @Test("Generated and mutated requests through the ring: one answer each, in time, and the channel stays up")
    func fuzzThroughTheChannel() throws {
        let report = try Self.run(seed: Self.seed, requests: Self.requests)
        print("storage VSP fuzz: seed \(Self.seed): \(report)")
        #expect(report.failures.isEmpty, "\(report.failures.prefix(5))")
        #expect(report.answers >= report.requests / 2, "\(report)")
    }

    @Test("The in-memory server harness, long form when asked")
    func fuzzTheServerLong() {
        let iterations = max(1500, Self.requests)
        let start = MonotonicClock.nanoseconds()
        let report = StorageFuzzHarness.run(seed: Self.seed, iterations: iterations)
        let seconds = Double(MonotonicClock.nanoseconds() - start) / 1e9
        print("storage server fuzz: seed \(Self.seed): \(report); \(Int(Double(iterations) / seconds)) packets/s")
        #expect(report.failures.isEmpty, "\(report.failures.prefix(5))")
    }

    struct Report: CustomStringConvertible {
        var requests = 0
        var answers = 0
        var notifications = 0
        var reopened = 0
        var seconds = 0.0
        var failures: [String] = []
        var description: String {
            "\(requests) requests, \(answers) answers, \(notifications) bus notifications in \(String(format: "%.1f", seconds)) s "
                + "(\(Int(Double(requests) / max(seconds, 1e-9))) requests/s)"
        }
    }

    /// Buffers are guest pages from 4 MiB up (the rings live below), or, now and then, pages
    /// outside the partition's RAM altogether.
    static func placed(_ range: GPARange, _ generator: inout StoragePacketGenerator) -> GPARange {
        var range = range
        let ramPages = UInt64(StorageRig.ramBytes / 4096)
        range.pfns = range.pfns.map { pfn in
            if generator.chance(1, in: 40) { return generator.chance(1, in: 2) ? ramPages + pfn : generator.next() }
            return 1024 + pfn % (ramPages - 1024)
        }
        return range
    }

    static func run(seed: UInt64, requests: Int) throws -> Report {
        let rig = try StorageRig(disks: [
            (name: "fuzz0.img", size: 2 << 20, settings: StorageSettings.Disk(path: "", lun: 0)),
            (name: "fuzz1.img", size: 2 << 20, settings: StorageSettings.Disk(path: "", lun: 1, target: 1, readOnly: true)),
            (name: "fuzz2.img", size: 2 << 20, settings: StorageSettings.Disk(path: "", lun: 2, blockSize: 4096)),
        ], subChannels: 3)
        var vsc = try rig.openChannel()
        guard vsc.initialize() != nil else { return Report(failures: ["initialization failed"]) }
        let guest = rig.guests[0]
        var generator = StoragePacketGenerator(seed: seed)
        var report = Report()
        var buffer: [UInt8] = []
        let start = MonotonicClock.nanoseconds()
        var owed: Set<UInt64> = []
        while report.requests < requests, report.failures.isEmpty {
            // A batch of packets, then every answer they are owed.
            for _ in 0..<64 {
                var packet = generator.chance(1, in: 16) ? generator.initializationPacket()
                    : generator.srbPacket(blockCount: 4096, blockSize: 512, maximumTransferBytes: 0x40000)
                if generator.chance(1, in: 4) { packet = generator.mutate(packet) }
                var header: [UInt8] = []
                switch packet.buffer {
                case .range(let range):
                    header = StorageGPADirectHeader(range: placed(range, &generator)).bytes
                case .malformed:
                    header = generator.bytes(8 * (2 + generator.below(4)))
                case .none:
                    if packet.type == .gpaDirect { header = generator.bytes(8 * generator.below(3)) }
                }
                do throws(RingError) {
                    try guest.writer.write(type: packet.type, flags: packet.flags, transactionID: packet.transactionID,
                                           header: header, payload: packet.payload)
                } catch {
                    // The ring is full of requests the VSP holds back: answer reading first.
                    break
                }
                if packet.flags.contains(.completionRequested) {
                    guard owed.insert(packet.transactionID).inserted else {
                        report.failures.append("transaction \(packet.transactionID) reused by the generator")
                        break
                    }
                }
                report.requests += 1
            }
            if guest.writer.commit() { guest.signalHost() }
            if generator.chance(1, in: 100) {
                // Disks come and go under the channel's feet.
                var settings = rig.settings
                if settings.disks.count == 3 { settings.disks.removeLast() } else {
                    settings.disks.append(StorageSettings.Disk(path: rig.path("fuzz2.img"), lun: 2, blockSize: 4096))
                }
                try rig.apply(settings)
            }
            let deadline = MonotonicClock.nanoseconds() + 30_000_000_000
            while !owed.isEmpty {
                let descriptor: PacketDescriptor?
                do throws(RingError) {
                    descriptor = try guest.reader.next(into: &buffer)
                } catch {
                    report.failures.append("the VSP corrupted its ring: \(error)")
                    break
                }
                guard let descriptor else {
                    if let failure = guest.failure {
                        report.failures.append("the channel failed: \(failure)")
                        break
                    }
                    guard MonotonicClock.nanoseconds() < deadline else {
                        report.failures.append("\(owed.count) answers missing after 30 s, e.g. \(owed.prefix(3))")
                        break
                    }
                    if guest.reader.commit() { guest.signalHost() }
                    usleep(20)
                    continue
                }
                if guest.reader.commit() { guest.signalHost() }
                let payload = Array(buffer[descriptor.payloadOffset..<descriptor.totalLength])
                if descriptor.transactionID == StorageChannelConstants.unsolicitedTransactionID {
                    report.notifications += 1
                    continue
                }
                guard payload.count >= VStorPacket.size, payload[0] == 1 else {
                    report.failures.append("answer to \(descriptor.transactionID) is not a 64-byte COMPLETE_IO")
                    continue
                }
                guard owed.remove(descriptor.transactionID) != nil else {
                    report.failures.append("answer to \(descriptor.transactionID), which was not owed one")
                    continue
                }
                report.answers += 1
            }
        }
        report.seconds = Double(MonotonicClock.nanoseconds() - start) / 1e9
        if let failure = guest.failure { report.failures.append("the channel failed: \(failure)") }
        _ = vsc
        return report
    }
}
