import DeviceModel
import Foundation
import LocalDeployment
import ManagementAPI

/// `hv bench storage`: the same disk file reached three ways, point by point, in one run —
/// the Embedded guest through the synthetic SCSI controller (storvsc ↔ the parent's VSP), the
/// same guest through the emulated IDE channel (every register access an exit), and fio on the
/// host (Docs/benchmarks.md, "Storage").
public enum StorageBenchmark {
    /// One I/O pattern: fio's `--rw`, block size and queue depth.
    public struct Point: Hashable, Sendable, Codable {
        public var rw: String
        public var blockSize: Int
        public var queueDepth: Int

        public init(rw: String, blockSize: Int, queueDepth: Int) {
            self.rw = rw
            self.blockSize = blockSize
            self.queueDepth = queueDepth
        }

        var isSequential: Bool { rw == "read" || rw == "write" }
        var guestArgument: String { "\(rw):\(blockSize):\(queueDepth)" }
        var label: String { "\(rw) \(blockSize >= 1 << 20 ? "\(blockSize >> 20)M" : "\(blockSize >> 10)K") QD\(queueDepth)" }

        /// Sequential 1 MiB read and write at QD 1 and 4, random 4 KiB read and write at QD 1 and 32.
        public static let standard: [Point] = [
            Point(rw: "read", blockSize: 1 << 20, queueDepth: 1), Point(rw: "read", blockSize: 1 << 20, queueDepth: 4),
            Point(rw: "write", blockSize: 1 << 20, queueDepth: 1), Point(rw: "write", blockSize: 1 << 20, queueDepth: 4),
            Point(rw: "randread", blockSize: 4096, queueDepth: 1), Point(rw: "randread", blockSize: 4096, queueDepth: 32),
            Point(rw: "randwrite", blockSize: 4096, queueDepth: 1), Point(rw: "randwrite", blockSize: 4096, queueDepth: 32),
        ]
    }

    public struct Options: Sendable {
        /// The backing file; created (and filled, so reads meet data rather than holes) when it
        /// does not exist or has another size.
        public var file: String
        public var fileBytes: UInt64
        public var seconds: Double
        public var points: [Point]
        /// Buffered, O_DIRECT, or both (in that order).
        public var directModes: [Bool]
        /// Channels the guest opens (the primary and up to this many minus one sub-channels).
        public var channels: Int
        /// Times each path is measured, taking turns with its baseline; the report gives each
        /// path's median round, so a host that speeds up or slows down over the run (a shared
        /// machine) weighs on the guest and on fio alike.
        public var rounds: Int

        public init(file: String, fileBytes: UInt64 = 1 << 30, seconds: Double = 1, points: [Point] = Point.standard,
                    directModes: [Bool] = [false, true], channels: Int = Options.defaultChannels, rounds: Int = 3) {
            self.file = file
            self.fileBytes = fileBytes
            self.seconds = seconds
            self.points = points
            self.directModes = directModes
            self.channels = channels
            self.rounds = max(1, rounds)
        }

        /// One channel per two host cores (at least one): each guest processor polls its
        /// channels while requests are in flight and each channel's worker polls its ring, so a
        /// channel needs a core for each, as fio's one job has a core to itself.
        public static var defaultChannels: Int {
            min(64, max(1, ProcessInfo.processInfo.activeProcessorCount / 2))
        }
    }

    /// One path's figures at one point.
    public struct Measurement: Codable, Sendable, Equatable {
        public var bytes_per_s: Double
        public var iops: Double
        public var p50_us: Double
        public var p99_us: Double
        public var operations: Int
        public var failures: Int
    }

    /// A figure with a goal: its value, the target and whether the run met it.
    public struct Goal: Codable, Sendable, Equatable {
        public var name: String
        public var value: Double
        /// The value must be at least this.
        public var target: Double
        public var met: Bool
    }

    /// Everything measured at one point.
    public struct Result: Codable, Sendable {
        public var rw: String
        public var block_size: Int
        public var queue_depth: Int
        public var direct: Bool
        public var synthetic: Measurement?
        public var emulated: Measurement?
        public var fio: Measurement?
        /// fio again with a host thread spinning beside it (O_DIRECT points only): the host's
        /// disk with a second core busy, as a polling guest keeps one. A reference, not a goal.
        public var fio_beside_busy_core: Measurement?
        /// Synthetic ÷ fio, of throughput (bytes/s).
        public var synthetic_to_fio: Double?
        /// Synthetic ÷ fio beside a busy core, of throughput.
        public var synthetic_to_fio_beside_busy_core: Double?
        /// Synthetic ÷ emulated, of throughput.
        public var synthetic_to_emulated: Double?
        public var goals: [Goal]
    }

    public struct Report: Codable, Sendable {
        public var results: [Result]
        public var file: String
        public var file_bytes: UInt64
        public var seconds_per_point: Double
        /// Rounds per path; each figure is its path's median round.
        public var rounds: Int
        public var channels: Int
        public var engine: String
        public var fio_version: String
        public var load_average_before: Double
        public var load_average_after: Double
        /// Percent of the host's processor time the hypervisor beneath it took ("steal",
        /// /proc/stat) while fio ran, and while the guest ran (both its paths and its boot); absent
        /// where /proc/stat could not be read.
        public var steal_percent_fio: Double?
        public var steal_percent_guest: Double?
        public var date: String
        public var machine: String
        /// Goals met of goals set.
        public var goals_met: Int
        public var goals: Int
    }

    /// Runs the benchmark on a root and parent of its own.
    public static func run(_ options: Options, executable: String, packageRoot: String, runtimeDirectory: String,
                           progress: @Sendable (String) -> Void) async throws -> Report {
        progress("starting the root scheduler and the parent partition")
        let deployment = try await LocalDeployment.start(executable: executable, runtimeDirectory: runtimeDirectory)
        defer { deployment.stop() }
        return try await run(options, on: deployment, packageRoot: packageRoot, progress: progress)
    }

    /// Runs the benchmark with a bench child of `deployment` ("storagebench"), deleted afterwards.
    public static func run(_ options: Options, on deployment: LocalDeployment, packageRoot: String,
                           progress: @Sendable (String) -> Void) async throws -> Report {
        let fio = try Fio.locate(progress: progress)
        let loadBefore = HostTools.loadAverage()
        try prepare(options.file, bytes: options.fileBytes, progress: progress)
        var results: [Result] = []
        var fioTime: ProcessorTime? = .zero
        var guestTime: ProcessorTime? = .zero
        for direct in options.directModes {
            let mode = direct ? "O_DIRECT" : "buffered"
            var fioRounds: [Point: [Measurement]] = [:]
            var busyRounds: [Point: [Measurement]] = [:]
            var syntheticRounds: [Point: [Measurement]] = [:]
            var emulatedRounds: [Point: [Measurement]] = [:]
            for round in 1...options.rounds {
                let of = options.rounds > 1 ? ", round \(round) of \(options.rounds)" : ""
                for point in options.points {
                    progress("fio, \(mode): \(point.label)\(of)")
                    let fioStart = ProcessorTime.now()
                    let measured = try Fio.run(fio, file: options.file, pattern: point.rw, blockSize: point.blockSize,
                                               queueDepth: point.queueDepth, direct: direct, seconds: options.seconds)
                    fioTime = ProcessorTime.accumulate(fioTime, since: fioStart)
                    syncFile(options.file)
                    fioRounds[point, default: []].append(Measurement(measured))
                    guard direct else { continue }
                    progress("fio beside a busy core, \(mode): \(point.label)\(of)")
                    let busy = try BusyCore.during {
                        try Fio.run(fio, file: options.file, pattern: point.rw, blockSize: point.blockSize,
                                    queueDepth: point.queueDepth, direct: direct, seconds: options.seconds)
                    }
                    busyRounds[point, default: []].append(Measurement(busy))
                }
                // The emulated disk, orders of magnitude slower and compared with the synthetic
                // path only, is measured in the first round.
                let emulated = round == 1
                progress("guest through storvsc\(emulated ? " and the emulated IDE disk" : ""), \(mode): \(options.points.count) points\(of)")
                let guestStart = ProcessorTime.now()
                let guest = try await runGuest(options, direct: direct, emulated: emulated, on: deployment, packageRoot: packageRoot)
                guestTime = ProcessorTime.accumulate(guestTime, since: guestStart)
                for (index, point) in options.points.enumerated() {
                    if let synthetic = guest[index]?.synthetic { syntheticRounds[point, default: []].append(synthetic) }
                    if let emulated = guest[index]?.emulated { emulatedRounds[point, default: []].append(emulated) }
                }
            }
            for point in options.points {
                results.append(result(point, direct: direct, synthetic: median(syntheticRounds[point]),
                                      emulated: median(emulatedRounds[point]), fio: median(fioRounds[point]),
                                      fioBesideBusyCore: median(busyRounds[point])))
            }
        }
        let goals = results.flatMap(\.goals)
        return Report(results: results, file: options.file, file_bytes: options.fileBytes, seconds_per_point: options.seconds,
                      rounds: options.rounds, channels: options.channels, engine: "io_uring", fio_version: Fio.version(fio),
                      load_average_before: loadBefore, load_average_after: HostTools.loadAverage(),
                      steal_percent_fio: fioTime?.stealPercent, steal_percent_guest: guestTime?.stealPercent,
                      date: ISO8601DateFormatter().string(from: Date()), machine: ChannelBenchmark.machineDescription(),
                      goals_met: goals.filter(\.met).count, goals: goals.count)
    }

    /// The round with the median throughput (the lower middle one of an even count), whole, so
    /// that its latencies go with its throughput.
    static func median(_ rounds: [Measurement]?) -> Measurement? {
        guard let rounds, !rounds.isEmpty else { return nil }
        return rounds.sorted { $0.bytes_per_s < $1.bytes_per_s }[(rounds.count - 1) / 2]
    }

    /// The guest's figures at one point.
    struct GuestPoint {
        var synthetic: Measurement?
        var emulated: Measurement?
    }

    /// One partition with the file behind both controllers, running every point (through the
    /// emulated disk too if `emulated`); its console lines carry the figures.
    static func runGuest(_ options: Options, direct: Bool, emulated: Bool, on deployment: LocalDeployment, packageRoot: String) async throws
        -> [Int: GuestPoint]
    {
        let name = "storagebench"
        var disk: [String: JSONValue] = ["path": .string(options.file), "lun": .number(0), "model": .string("hv bench disk")]
        if direct { disk["direct"] = .bool(true) }
        var ide: [String: JSONValue] = ["path": .string(options.file)]
        if direct { ide["direct"] = .bool(true) }
        // The largest request goes to the VSP whole (Hyper-V's 256 KiB would split a 1 MiB one in four).
        let transferKiB = max(256, (options.points.map(\.blockSize).max() ?? 0) / 1024)
        let devices = [DeviceConfiguration(kind: "scsi", settings: ["disks": .array([.object(disk)]),
                                                                   "subChannels": .number(Double(max(0, options.channels - 1))),
                                                                   "maxTransferKiB": .number(Double(transferKiB))]),
                       DeviceConfiguration(kind: "ide", settings: ide)]
        let milliseconds = Int(options.seconds * 1000)
        let arguments = "mode=storage-bench ms=\(milliseconds) region=\(options.fileBytes) channels=\(options.channels) "
            + "points=" + options.points.map(\.guestArgument).joined(separator: ",") + (emulated ? "" : " ide=0")
        let configuration = PartitionConfiguration(
            name: name, processors: max(1, options.channels), memoryMiB: 256,
            guest: .embedded(image: "Guest", arguments: arguments, imagePath: nil), devices: devices)
        let path = deployment.runtimeDirectory + "/\(name).json"
        let partitions = packageRoot + "/Partitions"
        // Resolved against Partitions/, where the guest's sources are.
        var resolved = try await LocalDeployment.resolveImage(configuration, configurationPath: partitions + "/\(name).json")
        if case .embedded(_, let arguments, let image?) = resolved.guest {
            resolved.guest = .embedded(image: image, arguments: arguments, imagePath: image)
        }
        try JSONEncoder().encode(resolved).write(to: URL(fileURLWithPath: path))
        _ = try await deployment.createPartition(configurationPath: path)
        let lines: [String]
        do {
            try await deployment.perform("start", on: name)
            // Every point runs twice its time, and an emulated 1 MiB request can take many seconds.
            let timeout = Double(options.points.count) * (2 * options.seconds + 60) + 120
            _ = try await deployment.waitForConsole(name, containing: "storage: done", timeoutSeconds: timeout)
            lines = try await deployment.console(name, lines: 2000)
        } catch {
            try? await deployment.delete(name)
            throw error
        }
        try await deployment.delete(name)
        var points: [Int: GuestPoint] = [:]
        for line in lines where line.contains("storage: point=") {
            let fields = Dictionary(line.split(separator: " ").compactMap { word -> (String, String)? in
                let parts = word.split(separator: "=", maxSplits: 1)
                return parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
            }, uniquingKeysWith: { _, last in last })
            guard let index = fields["point"].flatMap(Int.init), let path = fields["path"],
                  let operations = fields["ops"].flatMap(Int.init), let bytes = fields["bytes"].flatMap(Double.init),
                  let nanoseconds = fields["ns"].flatMap(Double.init), nanoseconds > 0 else { continue }
            let measurement = Measurement(
                bytes_per_s: bytes / nanoseconds * 1e9, iops: Double(operations) / nanoseconds * 1e9,
                p50_us: (fields["p50"].flatMap(Double.init) ?? 0) / 1000, p99_us: (fields["p99"].flatMap(Double.init) ?? 0) / 1000,
                operations: operations, failures: fields["failures"].flatMap(Int.init) ?? 0)
            if path == "synthetic" { points[index, default: GuestPoint()].synthetic = measurement }
            if path == "emulated" { points[index, default: GuestPoint()].emulated = measurement }
        }
        return points
    }

    /// A point's result and its goals (Docs/benchmarks.md): sequential 1 MiB buffered at least
    /// 0.95 × fio; random 4 KiB at QD32 at least 0.70 × fio's IOPS; synthetic at least 10 × the
    /// emulated disk everywhere.
    static func result(_ point: Point, direct: Bool, synthetic: Measurement?, emulated: Measurement?, fio: Measurement?,
                       fioBesideBusyCore: Measurement? = nil) -> Result {
        func ratio(_ a: Measurement?, _ b: Measurement?) -> Double? {
            guard let a, let b, b.bytes_per_s > 0 else { return nil }
            return a.bytes_per_s / b.bytes_per_s
        }
        let toFio = ratio(synthetic, fio)
        let toEmulated = ratio(synthetic, emulated)
        var goals: [Goal] = []
        let name = "\(point.label)\(direct ? " direct" : "")"
        if point.isSequential, point.blockSize == 1 << 20, !direct {
            goals.append(Goal(name: "\(name): synthetic / fio throughput", value: toFio ?? 0, target: 0.95, met: (toFio ?? 0) >= 0.95))
        }
        if !point.isSequential, point.blockSize == 4096, point.queueDepth == 32 {
            goals.append(Goal(name: "\(name): synthetic / fio IOPS", value: toFio ?? 0, target: 0.70, met: (toFio ?? 0) >= 0.70))
        }
        goals.append(Goal(name: "\(name): synthetic / emulated", value: toEmulated ?? 0, target: 10, met: (toEmulated ?? 0) >= 10))
        return Result(rw: point.rw, block_size: point.blockSize, queue_depth: point.queueDepth, direct: direct, synthetic: synthetic,
                      emulated: emulated, fio: fio, fio_beside_busy_core: fioBesideBusyCore, synthetic_to_fio: toFio,
                      synthetic_to_fio_beside_busy_core: ratio(synthetic, fioBesideBusyCore),
                      synthetic_to_emulated: toEmulated, goals: goals)
    }

    /// Makes `path` a file of `bytes` bytes full of data (not holes), unless it already is one.
    static func prepare(_ path: String, bytes: UInt64, progress: (String) -> Void) throws {
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? UInt64, size == bytes { return }
        progress("writing the \(bytes >> 20) MiB benchmark file \(path)")
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.truncate(atOffset: 0)
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var state: UInt64 = 0x5EED
        for index in stride(from: 0, to: chunk.count, by: 8) {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            withUnsafeBytes(of: state) { chunk.replaceSubrange(index..<(index + 8), with: $0) }
        }
        var written: UInt64 = 0
        while written < bytes {
            let count = Int(min(UInt64(chunk.count), bytes - written))
            try handle.write(contentsOf: chunk.prefix(count))
            written += UInt64(count)
        }
        try handle.synchronize()
    }

    /// fsync: written data goes to the medium between measurements, so no point inherits
    /// another's write-back.
    static func syncFile(_ path: String) {
        guard let handle = FileHandle(forUpdatingAtPath: path) else { return }
        try? handle.synchronize()
        try? handle.close()
    }
}

extension StorageBenchmark.Measurement {
    /// fio's figures for one job.
    init(_ fio: Fio.Result) {
        self.init(bytes_per_s: fio.bytesPerSecond, iops: fio.iops, p50_us: fio.p50Microseconds, p99_us: fio.p99Microseconds,
                  operations: fio.operations, failures: fio.errors)
    }
}
