import BenchProtocol
import Foundation
import LocalDeployment
import ManagementAPI

/// `hv bench channel`: VSC↔VSP throughput and latency over VMBus rings against a host-only
/// baseline measured in the same run (Docs/benchmarks.md).
public enum ChannelBenchmark {
    public struct Options: Sendable {
        public var sizes: [Int]
        public var partitions: Int
        /// Bytes each throughput phase moves per partition.
        public var bytes: Int
        public var roundTrips: Int
        /// Runs of each throughput point, VMBus and baseline alike; the median run is reported.
        public var repetitions: Int

        public init(sizes: [Int] = [64, 256, 1024, 4096, 16384, 65536], partitions: Int = 1,
                    bytes: Int = 64 << 20, roundTrips: Int = 2000, repetitions: Int = 5) {
            self.sizes = sizes
            self.partitions = partitions
            self.bytes = bytes
            self.roundTrips = roundTrips
            self.repetitions = max(1, repetitions)
        }
    }

    /// One measured point. Throughput modes compare messages per second with the host-only
    /// ring (ratio = VMBus / baseline, higher is better); round-trip modes compare the median
    /// latency (ratio = VMBus / baseline, lower is better).
    public struct Point: Codable, Sendable, Equatable {
        public var mode: String
        public var size_bytes: Int
        public var partitions: Int
        public var messages_per_s: Double
        public var bytes_per_s: Double
        public var p50_us: Double?
        public var p99_us: Double?
        public var baseline: String
        public var baseline_messages_per_s: Double
        public var baseline_bytes_per_s: Double
        public var baseline_p50_us: Double?
        public var ratio: Double
        /// Whether every phase of this point verified its data (sequence and checksums).
        public var intact: Bool

        public init(mode: String, size_bytes: Int, partitions: Int, messages_per_s: Double, bytes_per_s: Double,
                    p50_us: Double?, p99_us: Double?, baseline: String, baseline_messages_per_s: Double,
                    baseline_bytes_per_s: Double, baseline_p50_us: Double?, ratio: Double, intact: Bool) {
            self.mode = mode
            self.size_bytes = size_bytes
            self.partitions = partitions
            self.messages_per_s = messages_per_s
            self.bytes_per_s = bytes_per_s
            self.p50_us = p50_us
            self.p99_us = p99_us
            self.baseline = baseline
            self.baseline_messages_per_s = baseline_messages_per_s
            self.baseline_bytes_per_s = baseline_bytes_per_s
            self.baseline_p50_us = baseline_p50_us
            self.ratio = ratio
            self.intact = intact
        }
    }

    public struct Report: Codable, Sendable {
        public var points: [Point]
        /// Milliseconds from partition creation to its channels being open, per partition.
        public var startup_ms: [Double]
        public var partitions: Int
        public var date: String
        public var machine: String

        public init(points: [Point], startup_ms: [Double], partitions: Int, date: String, machine: String) {
            self.points = points
            self.startup_ms = startup_ms
            self.partitions = partitions
            self.date = date
            self.machine = machine
        }
    }

    /// Runs the benchmark on a root and parent of its own: baselines first, then
    /// `options.partitions` bench children at once.
    public static func run(_ options: Options, executable: String, packageRoot: String, runtimeDirectory: String,
                           progress: @Sendable (String) -> Void) async throws -> Report {
        progress("starting the root scheduler and the parent partition")
        let deployment = try await LocalDeployment.start(executable: executable, runtimeDirectory: runtimeDirectory)
        defer { deployment.stop() }
        return try await run(options, on: deployment, packageRoot: packageRoot, progress: progress)
    }

    /// Runs the benchmark with bench children of `deployment` (named bench1, bench2, …), which
    /// are stopped and deleted afterwards.
    public static func run(_ options: Options, on deployment: LocalDeployment, packageRoot: String,
                           progress: @Sendable (String) -> Void) async throws -> Report {
        progress("measuring the host-only ring baseline")
        var baselineRate: [Int: Double] = [:]
        var baselineRoundTrip: [Int: [UInt64]] = [:]
        for size in options.sizes {
            let rates = try (0..<options.repetitions).map { _ in
                try HostRingBaseline.throughput(size: size, count: max(64, options.bytes / size))
            }
            baselineRate[size] = rates.sorted()[(rates.count - 1) / 2]
            baselineRoundTrip[size] = try HostRingBaseline.polledRoundTrips(size: size, count: options.roundTrips).sorted()
        }

        let sizes = options.sizes.map(String.init).joined(separator: ",")
        let arguments = "mode=vmbus bench=throughput,source,signalled,polled,raw sizes=\(sizes) bytes=\(options.bytes) "
            + "rtts=\(options.roundTrips) repeat=\(options.repetitions)"
        var names: [String] = []
        for index in 1...max(1, options.partitions) {
            let info = try await deployment.createPartition(configurationPath: "\(packageRoot)/Partitions/bench.json",
                                                            overrideName: "bench\(index)", arguments: arguments)
            names.append(info.name)
        }
        progress("running \(names.count) bench partition\(names.count == 1 ? "" : "s")")
        for name in names { try await deployment.perform("start", on: name) }
        let timeout = 600.0
        var startup: [Double] = []
        for name in names {
            _ = try await deployment.waitForConsole(name, containing: "bench: done", timeoutSeconds: timeout)
            if let line = try await deployment.console(name, lines: 500).first(where: { $0.contains("channels open at reference time") }),
               let value = Self.number(after: "reference time ", in: line) {
                startup.append(value / 10_000)
            }
        }
        var facts: [[String: String]] = []
        for name in names {
            facts.append(try await deployment.info(name).status)
            try await deployment.delete(name)
        }

        var points: [Point] = []
        let partitions = names.count
        // The raw chain runs once per partition, with the smallest message, whatever the sizes.
        let rawP50 = median(facts.compactMap { latency($0, "raw-chain", BenchProtocol.minimumMessageSize, "p50") })
        for size in options.sizes {
            let baseline = baselineRate[size] ?? 0
            for mode in ["throughput", "source"] {
                let rates = facts.compactMap { rate($0, mode, size) }
                guard rates.count == partitions else { continue }
                let total = rates.reduce(0, +)
                points.append(Point(mode: mode, size_bytes: size, partitions: partitions, messages_per_s: total,
                                    bytes_per_s: total * Double(size), p50_us: nil, p99_us: nil,
                                    baseline: "host-only ring", baseline_messages_per_s: baseline,
                                    baseline_bytes_per_s: baseline * Double(size), baseline_p50_us: nil,
                                    ratio: baseline > 0 ? total / baseline : 0,
                                    intact: facts.allSatisfy { $0["bench.\(mode).\(size).intact"] == "true" }))
            }
            let hostPolled = baselineRoundTrip[size] ?? []
            let hostP50 = hostPolled.isEmpty ? 0 : Double(hostPolled[hostPolled.count / 2]) / 1000
            for (mode, baselineName, baselineP50) in [("signalled", "raw signalling chain", rawP50),
                                                      ("polled", "host-only ring ping-pong", hostP50)] {
                let p50s = facts.compactMap { latency($0, mode, size, "p50") }
                let p99s = facts.compactMap { latency($0, mode, size, "p99") }
                guard p50s.count == partitions, let p50 = median(p50s) as Double?, p50 > 0 else { continue }
                let rate = facts.compactMap { roundTripRate($0, mode, size) }.reduce(0, +)
                let baselineRate = baselineP50 > 0 ? 1e6 / baselineP50 : 0
                points.append(Point(mode: mode, size_bytes: size, partitions: partitions, messages_per_s: rate,
                                    bytes_per_s: rate * Double(size) * 2, p50_us: p50, p99_us: p99s.max(),
                                    baseline: baselineName, baseline_messages_per_s: baselineRate,
                                    baseline_bytes_per_s: baselineRate * Double(size) * 2, baseline_p50_us: baselineP50,
                                    ratio: baselineP50 > 0 ? p50 / baselineP50 : 0,
                                    intact: facts.allSatisfy { $0["bench.\(mode).\(size).intact"] == "true" }))
            }
        }
        let formatter = ISO8601DateFormatter()
        return Report(points: points, startup_ms: startup, partitions: partitions, date: formatter.string(from: Date()),
                      machine: machineDescription())
    }

    static func rate(_ facts: [String: String], _ mode: String, _ size: Int) -> Double? {
        guard let messages = facts["bench.\(mode).\(size).messages"].flatMap(Double.init),
              let nanoseconds = facts["bench.\(mode).\(size).host_ns"].flatMap(Double.init), nanoseconds > 0 else { return nil }
        return messages / nanoseconds * 1e9
    }

    static func roundTripRate(_ facts: [String: String], _ mode: String, _ size: Int) -> Double? {
        guard let messages = facts["bench.\(mode).\(size).messages"].flatMap(Double.init),
              let nanoseconds = facts["bench.\(mode).\(size).guest_ns"].flatMap(Double.init), nanoseconds > 0 else { return nil }
        return messages / nanoseconds * 1e9
    }

    static func latency(_ facts: [String: String], _ mode: String, _ size: Int, _ which: String) -> Double? {
        facts["bench.\(mode).\(size).\(which)_ns"].flatMap(Double.init).map { $0 / 1000 }
    }

    /// The median of latencies: the upper middle of an even count, the slower one, as the
    /// throughput medians (`PhaseRuns`, the baseline rates) take the lower, slower, rate.
    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        return values.sorted()[values.count / 2]
    }

    static func number(after marker: String, in line: String) -> Double? {
        guard let range = line.range(of: marker) else { return nil }
        return Double(line[range.upperBound...].prefix { $0.isNumber })
    }

    static func machineDescription() -> String {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
        return "\(cpu), \(ProcessInfo.processInfo.activeProcessorCount) cores"
    }
}
