import DeviceModel
import Foundation
import LocalDeployment
import ManagementAPI

/// `hv bench scheduler`: CPU-bound children (`mode=spin`) in contention on the host's
/// processors, showing that weights, limits and reserves hold, and that a latency-sensitive
/// child with a small reserve keeps its event round trip while its neighbours spin
/// (Docs/scheduling.md). Shares are the root's own accounting (each partition's control-group
/// usage over a window), not the guests' word.
public enum SchedulerBenchmark {
    public struct Options: Sendable {
        /// Seconds each share is measured over (after `warmup` seconds of contention).
        public var seconds: Double
        public var warmup: Double
        /// Round trips of the latency child, idle and loaded.
        public var roundTrips: Int
        /// Which experiments to run: weight, limit, reserve, latency.
        public var experiments: [String]

        public static let allExperiments = ["weight", "limit", "reserve", "latency"]

        public init(seconds: Double = 5, warmup: Double = 1, roundTrips: Int = 2000,
                    experiments: [String] = allExperiments) {
            self.seconds = seconds
            self.warmup = warmup
            self.roundTrips = roundTrips
            self.experiments = experiments
        }
    }

    public struct Report: Codable, Sendable {
        public var host: HostConditions
        /// The weight the root's instance got against other host work (`hv root --instance-weight`;
        /// nil: the root's default).
        public var instanceWeight: Int?
        public var experiments: [BenchExperiment]

        /// Whether every figure with a goal met it.
        public var allMet: Bool { experiments.allSatisfy { $0.figures.allSatisfy { $0.met != false } } }

        public var table: String {
            var lines = [BenchText.table(experiments), ""]
            for experiment in experiments { lines.append("\(experiment.name): \(experiment.setup)") }
            lines.append("")
            lines.append("\(host.machine); \(host.date); load average \(String(format: "%.2f", host.loadBefore)) before, "
                + "\(String(format: "%.2f", host.loadAfter)) after; the root's instance weight "
                + (instanceWeight.map(String.init) ?? "its default") + ".")
            return lines.joined(separator: "\n")
        }

        public var json: String { BenchText.json(self) }
    }

    /// The instance weight the benchmark's root runs with: the whole instance weighs like a
    /// hundred busy host threads, so shares are measured between partitions rather than against
    /// whatever else the host runs.
    public static let instanceWeight = 10_000

    /// Runs the benchmark on a root and parent of its own.
    public static func run(_ options: Options, executable: String, packageRoot: String, runtimeDirectory: String,
                           progress: @Sendable (String) -> Void) async throws -> Report {
        progress("building the guest")
        let image = try await LocalDeployment.buildGuest(packageRoot: packageRoot)
        progress("starting the root scheduler and the parent partition")
        let deployment = try await LocalDeployment.start(
            executable: executable, runtimeDirectory: runtimeDirectory,
            rootArguments: ["--instance-weight", "\(instanceWeight)"])
        defer { deployment.stop() }
        return try await run(options, on: deployment, image: image, instanceWeight: instanceWeight, progress: progress)
    }

    /// Runs the chosen experiments with children of `deployment`, deleting each afterwards.
    /// `instanceWeight` is what its root was started with, for the report.
    public static func run(_ options: Options, on deployment: LocalDeployment, image: String, instanceWeight: Int? = nil,
                           progress: @Sendable (String) -> Void) async throws -> Report {
        var host = HostConditions.now(machine: ChannelBenchmark.machineDescription())
        let bench = Runner(deployment: deployment, image: image, options: options)
        var experiments: [BenchExperiment] = []
        for name in options.experiments {
            progress("running the \(name) experiment")
            switch name {
            case "weight": experiments.append(try await bench.weights())
            case "limit": experiments.append(try await bench.limit())
            case "reserve": experiments.append(try await bench.reserve())
            case "latency": experiments.append(try await bench.latency())
            default: continue
            }
        }
        host.loadAfter = HostConditions.loadAverage()
        return Report(host: host, instanceWeight: instanceWeight, experiments: experiments)
    }

    /// The experiments, with the partitions they make.
    struct Runner {
        let deployment: LocalDeployment
        let image: String
        let options: Options

        /// Two 2-VP spinning children with weights 100 and 300 on every host processor: four
        /// spinning threads, so they contend on a 2-processor host.
        func weights() async throws -> BenchExperiment {
            let processors = ProcessInfo.processInfo.activeProcessorCount
            try await spin("light", processors: processors, cpu: ProcessorSettings(weight: 100))
            try await spin("heavy", processors: processors, cpu: ProcessorSettings(weight: 300))
            let rates = try await measure(["light", "heavy"])
            try await remove(["light", "heavy"])
            let total = rates[0] + rates[1]
            let light = total > 0 ? rates[0] / total * 100 : 0
            return BenchExperiment(
                name: "weight",
                setup: "two children of \(processors) spinning VPs each, weights 100 and 300, on \(processors) host "
                    + "processors; shares of their CPU time over \(format(options.seconds)) s.",
                figures: [
                    BenchFigure("share of weight 100", light, unit: "%", target: "25 % ± 10 %", low: 22.5, high: 27.5),
                    BenchFigure("share of weight 300", 100 - light, unit: "%", target: "75 % ± 10 %", low: 67.5, high: 82.5),
                    BenchFigure("host processors used by both", total, unit: "processors"),
                ])
        }

        /// One 1-VP spinning child limited to 25 %, alone.
        func limit() async throws -> BenchExperiment {
            try await spin("capped", processors: 1, cpu: ProcessorSettings(limit: 25))
            let rate = try await measure(["capped"])[0] * 100
            try await remove(["capped"])
            return BenchExperiment(
                name: "limit",
                setup: "one child with one spinning VP, limit 25 %, and nothing else of the root's running.",
                figures: [BenchFigure("processor used", rate, unit: "%", target: "25 % ± 5 points", low: 20, high: 30)])
        }

        /// A 1-VP child with a 50 % reserve and the smallest weight against three 1-VP neighbours
        /// of the largest weight, all spinning; then the same without the reserve.
        func reserve() async throws -> BenchExperiment {
            let neighbours = ["greedy1", "greedy2", "greedy3"]
            for name in neighbours { try await spin(name, processors: 1, cpu: ProcessorSettings(weight: 10_000)) }
            try await spin("reserved", processors: 1, cpu: ProcessorSettings(reserve: 50, weight: 1))
            let withReserve = try await measure(["reserved"] + neighbours)
            // The same contention without the reserve, changed at run time.
            try await deployment.client.setProcessorControls("reserved", ProcessorSettings(reserve: 0))
            let without = try await measure(["reserved"] + neighbours)
            try await remove(neighbours + ["reserved"])
            return BenchExperiment(
                name: "reserve",
                setup: "a 1-VP child with reserve 50 % and weight 1 against three 1-VP neighbours of weight 10000, all "
                    + "spinning; then its reserve set to 0 while it runs.",
                figures: [
                    BenchFigure("processor used with the reserve", withReserve[0] * 100, unit: "%",
                                target: "50 % ± 5 points", low: 45, high: 55),
                    BenchFigure("each neighbour, mean", withReserve.dropFirst().reduce(0, +) / 3 * 100, unit: "%"),
                    BenchFigure("processor used without it", without[0] * 100, unit: "%"),
                ])
        }

        /// A 1-VP bench child with a 10 % reserve times halting event round trips alone, then
        /// while three 1-VP neighbours spin, then the same without its reserve.
        func latency() async throws -> BenchExperiment {
            let idle = try await roundTrip("latency-idle", reserve: 10)
            let neighbours = ["spinner1", "spinner2", "spinner3"]
            for name in neighbours { try await spin(name, processors: 1, cpu: nil) }
            try await Task.sleep(for: .seconds(options.warmup))
            let loaded = try await roundTrip("latency-loaded", reserve: 10)
            let unreserved = try await roundTrip("latency-unreserved", reserve: 0)
            try await remove(neighbours)
            let ratio = idle.p50 > 0 ? loaded.p50 / idle.p50 : .infinity
            return BenchExperiment(
                name: "latency",
                setup: "a 1-VP child with reserve 10 % times \(options.roundTrips) event round trips on its bench channel "
                    + "(HvSignalEvent out, halted until the answer's interrupt), alone, then while three 1-VP children "
                    + "spin, then without its reserve.",
                figures: [
                    BenchFigure("round trip p50, idle", idle.p50, unit: "µs"),
                    BenchFigure("round trip p99, idle", idle.p99, unit: "µs"),
                    BenchFigure("round trip p50, neighbours spinning", loaded.p50, unit: "µs"),
                    BenchFigure("round trip p99, neighbours spinning", loaded.p99, unit: "µs"),
                    BenchFigure("p50 spinning / p50 idle", ratio, unit: "×", target: "≤ 2×", high: 2),
                    BenchFigure("round trip p50, spinning, no reserve", unreserved.p50, unit: "µs"),
                    BenchFigure("round trip p99, spinning, no reserve", unreserved.p99, unit: "µs"),
                ])
        }

        // MARK: Helpers

        /// Creates and starts a spinning child.
        func spin(_ name: String, processors: Int, cpu: ProcessorSettings?) async throws {
            let configuration = PartitionConfiguration(
                name: name, processors: processors, memoryMiB: 16,
                guest: .embedded(image: "Guest", arguments: "mode=spin report-ms=1000", imagePath: image), cpu: cpu)
            _ = try await deployment.create(configuration)
            try await deployment.perform("start", on: name)
        }

        /// Each partition's processors in use (1.0 = one host processor) over the window, from
        /// its control group's usage, after the warm-up.
        func measure(_ names: [String]) async throws -> [Double] {
            try await Task.sleep(for: .seconds(options.warmup))
            var first: [PartitionStatistics] = []
            for name in names { first.append(try await deployment.client.statistics(name)) }
            try await Task.sleep(for: .seconds(options.seconds))
            var rates: [Double] = []
            for (name, before) in zip(names, first) {
                let after = try await deployment.client.statistics(name)
                let elapsed = Double(after.sampledAtNanoseconds &- before.sampledAtNanoseconds)
                rates.append(elapsed > 0 ? Double(after.cpu.totalNanoseconds &- before.cpu.totalNanoseconds) / elapsed : 0)
            }
            return rates
        }

        /// Runs the halting round-trip plan in a new bench child; its p50 and p99 in µs.
        func roundTrip(_ name: String, reserve: Int) async throws -> (p50: Double, p99: Double) {
            let configuration = PartitionConfiguration(
                name: name, processors: 1, memoryMiB: 32,
                guest: .embedded(image: "Guest",
                                 arguments: "mode=vmbus bench=halting sizes=64 rtts=\(options.roundTrips) ring-kib=64",
                                 imagePath: image),
                devices: [DeviceConfiguration(kind: "bench")], cpu: ProcessorSettings(reserve: reserve))
            _ = try await deployment.create(configuration)
            try await deployment.perform("start", on: name)
            _ = try await deployment.waitForConsole(name, containing: "bench: done", timeoutSeconds: 120)
            let facts = try await deployment.info(name).status
            try await deployment.delete(name)
            let p50 = facts["bench.halting.64.p50_ns"].flatMap(Double.init) ?? .nan
            let p99 = facts["bench.halting.64.p99_ns"].flatMap(Double.init) ?? .nan
            return (p50 / 1000, p99 / 1000)
        }

        func remove(_ names: [String]) async throws {
            for name in names { try? await deployment.delete(name) }
        }

        func format(_ seconds: Double) -> String { String(format: "%g", seconds) }
    }
}
