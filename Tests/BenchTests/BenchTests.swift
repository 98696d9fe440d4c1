@testable import Bench
import BenchProtocol
@testable import BenchVSP
import Foundation
import Testing

@Suite("Bench device and report")
struct BenchTests {
    /// The checksum's definition, a byte at a time: each whole 8-byte word assembled
    /// little-endian from its bytes, then each remaining byte, XORed in and multiplied by the
    /// FNV prime. `BenchPattern.checksum` loads the words directly and must agree.
    static func referenceChecksum(_ checksum: UInt64, _ bytes: ArraySlice<UInt8>) -> UInt64 {
        var value = checksum
        var index = bytes.startIndex
        while index + 8 <= bytes.endIndex {
            var word: UInt64 = 0
            for shift in 0..<8 { word |= UInt64(bytes[index + shift]) << UInt64(8 * shift) }
            value = (value ^ word) &* 0x0000_0100_0000_01B3
            index += 8
        }
        while index < bytes.endIndex {
            value = (value ^ UInt64(bytes[index])) &* 0x0000_0100_0000_01B3
            index += 1
        }
        return value
    }

    @Test func fastChecksumEqualsTheReference() {
        var generator = SystemRandomNumberGenerator()
        for length in [0, 1, 7, 8, 9, 63, 64, 4064, 5000] {
            let bytes = (0..<(length + 3)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            // An unaligned slice that does not start at index 0.
            let slice = bytes[3...]
            let seed = UInt64.random(in: 0...UInt64.max, using: &generator)
            #expect(BenchPattern.checksum(BenchPattern.seed, slice) == Self.referenceChecksum(BenchPattern.seed, slice))
            #expect(BenchPattern.checksum(seed, slice) == Self.referenceChecksum(seed, slice))
        }
        // A fixed value, so a change of definition shows even if both sides change together.
        let nineBytes: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8, 9]
        #expect(BenchPattern.checksum(BenchPattern.seed, nineBytes[...]) == 0xF70F_13FD_27F9_2EDF)
    }

    @Test func theChecksumCoversExactlyTheMessageNotTheRingPadding() {
        // A 29-byte message padded to 32 in the ring: the padding must not change the checksum.
        var message = [UInt8](repeating: 0, count: 29)
        BenchPattern.fill(&message, from: BenchHeader.size, to: message.count, sequence: 5)
        let padded = message + [UInt8](repeating: 0, count: 3)
        let sent = BenchPattern.checksum(BenchPattern.seed, message[BenchHeader.size...])
        #expect(BenchPattern.checksum(BenchPattern.seed, padded.prefix(message.count).dropFirst(BenchHeader.size)) == sent)
        #expect(BenchPattern.checksum(BenchPattern.seed, padded.dropFirst(BenchHeader.size)) != sent)
    }

    @Test func phaseRecordsRoundTrip() throws {
        let phase = BenchPhase(mode: .throughput, messageSize: 4096, count: 12, flags: BenchPhase.verifyFlag)
        #expect(BenchPhase(parsing: phase.bytes[...]) == phase)
        #expect(phase.verifies)
        let end = BenchPhaseEnd(messages: 1, checksum: 2, guestNanoseconds: 3, p50Nanoseconds: 4, p99Nanoseconds: 5)
        #expect(BenchPhaseEnd(parsing: end.bytes[...]) == end)
        var header = [UInt8](repeating: 0, count: 16)
        BenchHeader(kind: .ping, phase: 7, sequence: 9).store(into: &header)
        #expect(BenchHeader(parsing: header[...]) == BenchHeader(kind: .ping, phase: 7, sequence: 9))
        #expect(BenchHeader(parsing: header[..<15]) == nil)
    }

    @Test func aRepeatedPointIsReportedByItsMedianRunAndIntactOnlyIfEveryRunWas() {
        var runs = PhaseRuns()
        #expect(runs.median == nil)
        // Rates 1000, 100 (a run that lost a time slice), 900, 1100, 950 messages per second.
        for (nanoseconds, intact) in [(1_000_000_000, true), (10_000_000_000, true), (1_111_111_111, true),
                                      (909_090_909, true), (1_052_631_579, false)] as [(UInt64, Bool)] {
            runs.add(.init(messages: 1000, hostNanoseconds: nanoseconds, guestNanoseconds: 0, intact: intact))
        }
        #expect(runs.count == 5)
        #expect(runs.median?.hostNanoseconds == 1_052_631_579, "950 msg/s is the middle of five")
        #expect(!runs.allIntact)
        var two = PhaseRuns()
        two.add(.init(messages: 10, hostNanoseconds: 1_000, guestNanoseconds: 0, intact: true))
        two.add(.init(messages: 10, hostNanoseconds: 2_000, guestNanoseconds: 0, intact: true))
        #expect(two.median?.hostNanoseconds == 2_000, "an even count reports the lower middle (slower) run")
        #expect(two.allIntact)
    }

    @Test func aStoragePathIsReportedByItsMedianRoundWithThatRoundsLatencies() {
        func round(_ bytes: Double, p50: Double) -> StorageBenchmark.Measurement {
            StorageBenchmark.Measurement(bytes_per_s: bytes, iops: bytes / 4096, p50_us: p50, p99_us: p50 * 2,
                                         operations: 1, failures: 0)
        }
        let rounds = [round(300, p50: 3), round(100, p50: 1), round(200, p50: 2)]
        #expect(StorageBenchmark.median(rounds) == round(200, p50: 2))
        // An even count takes the lower middle round; nothing measured stays nothing.
        #expect(StorageBenchmark.median(Array(rounds.prefix(2))) == round(100, p50: 1))
        #expect(StorageBenchmark.median([]) == nil && StorageBenchmark.median(nil) == nil)
    }

    @Test func fioBesideABusyCoreIsAReferenceRatioNotAGoal() throws {
        func measured(_ iops: Double) -> StorageBenchmark.Measurement {
            StorageBenchmark.Measurement(bytes_per_s: iops * 4096, iops: iops, p50_us: 1, p99_us: 2, operations: 1, failures: 0)
        }
        let point = StorageBenchmark.Point(rw: "randread", blockSize: 4096, queueDepth: 32)
        let result = StorageBenchmark.result(point, direct: true, synthetic: measured(60_000), emulated: measured(600),
                                             fio: measured(100_000), fioBesideBusyCore: measured(75_000))
        #expect(result.synthetic_to_fio == 0.6 && result.synthetic_to_fio_beside_busy_core == 0.8)
        // The goal stays against fio alone.
        #expect(result.goals.map(\.value) == [0.6, 100] && result.goals.map(\.met) == [false, true])
        let report = StorageBenchmark.Report(results: [result], file: "f", file_bytes: 1 << 30, seconds_per_point: 1, rounds: 3,
                                             channels: 1, engine: "io_uring", fio_version: "fio", load_average_before: 0,
                                             load_average_after: 0, date: "now", machine: "test", goals_met: 1, goals: 2)
        #expect(report.table.contains("fio beside a busy core") && report.table.contains("randread 4K QD32 75000 IOPS (synthetic 0.80 of it)"))
        let object = try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any]
        let results = try #require(object?["results"] as? [[String: Any]])
        #expect(results[0]["synthetic_to_fio_beside_busy_core"] as? Double == 0.8)
        // Buffered points have no such reference, and their table has no such line.
        let buffered = StorageBenchmark.result(point, direct: false, synthetic: measured(1), emulated: nil, fio: measured(1))
        #expect(buffered.fio_beside_busy_core == nil && buffered.synthetic_to_fio_beside_busy_core == nil)
    }

    @Test func aBusyCoreSpinsOnAThreadOfItsOwnWhileItsBodyRunsAndStopsAfter() throws {
        /// The processor time (clock ticks, proc(5) stat fields 14 and 15) of this process's
        /// threads named `name`.
        func ticks(ofThreadsNamed name: String) -> [Int] {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
            return tasks.compactMap { task -> Int? in
                guard let comm = try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8),
                      comm.trimmingCharacters(in: .whitespacesAndNewlines) == name,
                      let stat = try? String(contentsOfFile: "/proc/self/task/\(task)/stat", encoding: .utf8),
                      let close = stat.lastIndex(of: ")")
                else { return nil }
                // After the ")" that ends the name: state is field 3, utime 14, stime 15.
                let fields = stat[stat.index(after: close)...].split(separator: " ")
                guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
                return user + system
            }
        }
        // One spinning thread, which gets 50 ms of processor time (ticks are 10 ms at the usual
        // 100 Hz) however long other tests sharing the two cores make that take.
        let during = try BusyCore.during { () -> [Int] in
            var seen = ticks(ofThreadsNamed: "busy-core")
            for _ in 0..<200 where (seen.first ?? 0) < 5 {
                usleep(50_000)
                seen = ticks(ofThreadsNamed: "busy-core")
            }
            return seen
        }
        #expect(during.count == 1 && (during.first ?? 0) >= 5, "\(during)")
        // A joined thread leaves /proc/self/task a moment after the join returns.
        var left = ticks(ofThreadsNamed: "busy-core")
        for _ in 0..<500 where !left.isEmpty {
            usleep(10_000)
            left = ticks(ofThreadsNamed: "busy-core")
        }
        #expect(left.isEmpty)
    }

    @Test func stealIsTheEighthFigureOfProcStatsCPULineAsAShareOfTheFirstEight() throws {
        // proc(5): cpu user nice system idle iowait irq softirq steal guest guest_nice.
        let before = try #require(ProcessorTime(procStat: "cpu  100 0 50 800 10 0 5 35 60 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"))
        #expect(before == ProcessorTime(total: 1000, steal: 35))
        let after = try #require(ProcessorTime(procStat: "cpu  160 0 80 840 10 0 5 65 99 0\n"))
        let window = after.since(before)
        #expect(window == ProcessorTime(total: 160, steal: 30))
        #expect(abs(window.stealPercent - 18.75) < 1e-9)
        #expect((window + window).stealPercent == window.stealPercent)
        #expect(ProcessorTime.zero.stealPercent == 0)
        #expect(ProcessorTime.accumulate(.zero, since: nil) == nil && ProcessorTime.accumulate(nil, since: .zero) == nil)
        #expect(ProcessorTime.describe(nil) == "unknown" && ProcessorTime.describe(18.75) == "19 %")
        #expect(ProcessorTime(procStat: "cpu0 1 2 3\n") == nil && ProcessorTime(procStat: "cpu  1 2 x 4 5 6 7 8\n") == nil)
    }

    @Test func hostBaselinesMeasureSomething() throws {
        let messagesPerSecond = try HostRingBaseline.throughput(size: 256, count: 20_000)
        #expect(messagesPerSecond > 0)
        let samples = try HostRingBaseline.polledRoundTrips(size: 64, count: 200)
        #expect(samples.count == 200)
    }

    @Test func reportJSONCarriesTheFieldsEachPointNeeds() throws {
        let point = ChannelBenchmark.Point(
            mode: "throughput", size_bytes: 4096, partitions: 1, messages_per_s: 100, bytes_per_s: 409_600, p50_us: nil,
            p99_us: nil, baseline: "host-only ring", baseline_messages_per_s: 200, baseline_bytes_per_s: 819_200,
            baseline_p50_us: nil, ratio: 0.5, intact: true)
        let latency = ChannelBenchmark.Point(
            mode: "signalled", size_bytes: 64, partitions: 1, messages_per_s: 10, bytes_per_s: 1280, p50_us: 50, p99_us: 90,
            baseline: "raw signalling chain", baseline_messages_per_s: 20, baseline_bytes_per_s: 2560, baseline_p50_us: 40,
            ratio: 1.25, intact: true)
        let report = ChannelBenchmark.Report(points: [point, latency], startup_ms: [21], partitions: 1, date: "now", machine: "test")
        let object = try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any]
        let points = try #require(object?["points"] as? [[String: Any]])
        for key in ["mode", "size_bytes", "messages_per_s", "bytes_per_s", "baseline_messages_per_s", "baseline_bytes_per_s", "ratio"] {
            #expect(points.allSatisfy { $0[key] != nil }, "every point has \(key)")
        }
        #expect(points[1]["p50_us"] as? Double == 50 && points[1]["p99_us"] as? Double == 90)
        let svg = report.svg
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n") && svg.contains("<polyline"))
        #expect(report.table.contains("throughput") && report.table.contains("0.50"))
    }

    @Test func networkLossesAccountForEveryMissingFrameByWhereItWasDropped() throws {
        let drops = NetworkBenchmark.DropCounts(hostTAP: 1000, switchPort: 200, nic: 30)
            .since(NetworkBenchmark.DropCounts(hostTAP: 100, switchPort: 50, nic: 0))
        #expect(drops.hostTAP == 900 && drops.switchPort == 150 && drops.nic == 30)
        let hostToGuest = NetworkReport.Losses(direction: "host-to-guest", frames_sent: 2000, frames_received: 900, drops: drops)
        #expect(hostToGuest.elsewhere == 20)
        #expect(hostToGuest.summary.contains("1100 of 2000 frames did not arrive: 900 by the host TAP"))
        #expect(hostToGuest.summary.contains("150 at the child's switch port") && hostToGuest.summary.contains("20 elsewhere"))
        // Guest to guest has no TAP on the way.
        let guestToGuest = NetworkReport.Losses(direction: "guest-to-guest", frames_sent: 100, frames_received: 90,
                                                drops: NetworkBenchmark.DropCounts(switchPort: 12, nic: 0))
        #expect(guestToGuest.host_tap == nil && guestToGuest.elsewhere == -2 && !guestToGuest.summary.contains("TAP"))
        // More drops than missing frames: the counters saw frames that were not the bench's.
        #expect(guestToGuest.summary.hasSuffix("elsewhere unknown (the counters saw 2 more drops than frames went missing: frames not the bench's)."))
        // A counter read at only one end is unknown, and so is what nothing counted.
        let halfRead = NetworkBenchmark.DropCounts(hostTAP: 5, switchPort: 7, nic: 1)
            .since(NetworkBenchmark.DropCounts(hostTAP: nil, switchPort: 2, nic: nil))
        #expect(halfRead.hostTAP == nil && halfRead.switchPort == 5 && halfRead.nic == nil)
        let unknown = NetworkReport.Losses(direction: "host-to-guest", frames_sent: 10, frames_received: 4, drops: halfRead)
        #expect(unknown.elsewhere == nil && unknown.summary.contains("unknown by the host TAP"))
        let ping = NetworkReport.Ping(replies: 1, sent: 1, p50_us: 1, p99_us: 1, veth_p50_us: 1, veth_p99_us: 1,
                                      raw_chain_p50_us: 1, target: "t", target_us: 3, met: true)
        let report = NetworkReport(points: [], ping: ping, losses: [hostToGuest, guestToGuest], mtu: 1500, frames: 1000,
                                   date: "now", machine: "test", load_average: "0", steal_percent_baselines: 1,
                                   steal_percent_guests: 22)
        let object = try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any]
        #expect(object?["steal_percent_guests"] as? Double == 22)
        #expect(report.table.contains("host steal 1 % while the baselines ran, 22 % while the guests ran"))
        let losses = try #require(object?["losses"] as? [[String: Any]])
        #expect(losses.count == 2 && losses[0]["host_tap"] as? Int == 900 && losses[1]["switch_port"] as? Int == 12)
        #expect(report.table.contains(hostToGuest.summary) && report.table.contains(guestToGuest.summary))
    }

    @Test func tableColumnsStaySeparatedWhenAFigureOverflowsItsWidth() {
        let collapsed = ChannelBenchmark.Point(
            mode: "polled", size_bytes: 64, partitions: 2, messages_per_s: 254, bytes_per_s: 16_256, p50_us: 7999.3,
            p99_us: 12_036.5, baseline: "host-only ring ping-pong", baseline_messages_per_s: 278_940,
            baseline_bytes_per_s: 17_852_160, baseline_p50_us: 3.6, ratio: 2231.33, intact: true)
        let report = ChannelBenchmark.Report(points: [collapsed], startup_ms: [21], partitions: 2, date: "now", machine: "test")
        let row = report.table.split(separator: "\n")[1]
        #expect(row.hasSuffix("2231.33 yes"), "the ratio and the intact flag are separate words: \(row)")
    }

    @Test("a burst counts every frame from the last quiet sample, so none of its first millisecond is lost; bursts split at the gap, strays and a burst cut short by a counter that went back are ignored")
    func burstsCountEveryFrameFromTheLastQuietSample() {
        let ms: UInt64 = 1_000_000
        /// Feeds `samples` (counter value, milliseconds) to `cutter`.
        func feed(_ cutter: inout BurstCutter, _ samples: [(UInt64, UInt64)]) {
            for (count, time) in samples { cutter.sample(count, at: time * ms) }
        }
        var cutter = BurstCutter(sizes: [64, 1514], minimumFrames: 100, gapNanoseconds: 150 * ms, count: 7, at: 0)
        // Quiet, then a stray ARP (one frame): too small to be a burst. Then the first burst:
        // 900 frames arrive before its first sample sees them, 1,100 more after.
        feed(&cutter, [(7, 1), (8, 2), (8, 200), (8, 300), (908, 301), (1_508, 302), (2_008, 303), (2_008, 400)])
        #expect(cutter.tallies.isEmpty)
        feed(&cutter, [(2_008, 454)])  // 151 ms quiet: the burst ends
        #expect(cutter.tallies.count == 1)
        // The second, still open when the sampling stops.
        feed(&cutter, [(2_508, 1_455), (3_008, 1_456)])
        let tallies = cutter.finish()
        #expect(tallies.map(\.size) == [64, 1514])
        #expect(tallies.map(\.frames) == [2_000, 1_000])
        #expect(tallies.map(\.first) == [300 * ms, 454 * ms])
        #expect(tallies.map(\.last) == [303 * ms, 1_456 * ms])
        #expect(cutter.isComplete)

        // A counter that went back (the interface was made again): the burst it cut short is
        // dropped, and counting starts afresh from the new value (not a wrapped subtraction).
        var restarted = BurstCutter(sizes: [64, 1514], minimumFrames: 10, gapNanoseconds: 150 * ms, count: 5_000, at: 0)
        feed(&restarted, [(5_050, 1), (3, 2), (40, 3), (40, 200), (60, 300)])
        let afresh = restarted.finish()
        #expect(afresh.map(\.frames) == [37, 20])
        #expect(afresh.map(\.first) == [2 * ms, 200 * ms])
    }
}
