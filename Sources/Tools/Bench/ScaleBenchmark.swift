import DeviceModel
import Foundation
import LinuxSupport
import LocalDeployment
import ManagementAPI

/// `hv bench scale`: many small children at once (by default 64 of 1 VP and 16 MiB, each with
/// the heartbeat and the bench channel open) created and started concurrently through the API;
/// the time from each one's create request to its channels being open, what the root and the
/// parent spend per child beyond guest RAM, a channel benchmark across all of them at once, and
/// the root's and parent's descriptors, threads and memory once they are all deleted.
public enum ScaleBenchmark {
    public struct Options: Sendable {
        public var partitions: Int
        public var memoryMiB: Int
        /// Create-and-start requests in flight at once.
        public var concurrency: Int
        /// Round trips each child times in the channel benchmark.
        public var roundTrips: Int
        /// Bytes each child streams to the parent in the channel benchmark.
        public var bytes: Int

        public init(partitions: Int = 64, memoryMiB: Int = 16, concurrency: Int = 4, roundTrips: Int = 200,
                    bytes: Int = 1 << 20) {
            self.partitions = partitions
            self.memoryMiB = memoryMiB
            self.concurrency = max(1, concurrency)
            self.roundTrips = roundTrips
            self.bytes = bytes
        }
    }

    public struct Report: Codable, Sendable {
        public var host: HostConditions
        public var partitions: Int
        public var concurrency: Int
        /// Milliseconds from each create request to that child's channels being open.
        public var startupMilliseconds: [Double]
        public var root: Resources
        public var parent: Resources
        public var experiments: [BenchExperiment]

        /// A process at the start, with every child running, after every child was deleted, and
        /// after each later round of as many children created and deleted.
        public struct Resources: Codable, Sendable {
            public var before: ProcessSample
            public var loaded: ProcessSample
            public var after: ProcessSample
            /// After rounds 2, 3, …
            public var afterLaterRounds: [ProcessSample]
        }

        public var allMet: Bool { experiments.allSatisfy { $0.figures.allSatisfy { $0.met != false } } }

        public var table: String {
            var lines = [BenchText.table(experiments), ""]
            for experiment in experiments { lines.append("\(experiment.name): \(experiment.setup)") }
            lines.append("")
            func describe(_ name: String, _ resources: Resources) -> String {
                func line(_ sample: ProcessSample) -> String {
                    String(format: "%.1f MiB heap and stacks + %.1f MiB code + %.1f MiB guest RAM, %d descriptors, %d threads",
                           Double(sample.anonymousBytes) / 1_048_576, Double(sample.fileBytes) / 1_048_576,
                           Double(sample.sharedBytes) / 1_048_576, sample.descriptors, sample.threads)
                }
                let later = resources.afterLaterRounds.enumerated().map { "after round \($0 + 2) \(line($1))" }
                return (["\(name): before \(line(resources.before))", "with \(partitions) children \(line(resources.loaded))",
                         "after \(line(resources.after))"] + later).joined(separator: "; ")
            }
            lines.append(describe("root", root))
            lines.append(describe("parent", parent))
            lines.append("\(host.machine); \(host.date); load average \(String(format: "%.2f", host.loadBefore)) before, "
                + "\(String(format: "%.2f", host.loadAfter)) after; \(concurrency) create requests in flight.")
            return lines.joined(separator: "\n")
        }

        public var json: String { BenchText.json(self) }
    }

    public static func run(_ options: Options, executable: String, packageRoot: String, runtimeDirectory: String,
                           progress: @Sendable (String) -> Void) async throws -> Report {
        progress("building the guest")
        let image = try await LocalDeployment.buildGuest(packageRoot: packageRoot)
        progress("starting the root scheduler and the parent partition")
        let deployment = try await LocalDeployment.start(executable: executable, runtimeDirectory: runtimeDirectory)
        defer { deployment.stop() }
        return try await run(options, on: deployment, image: image, progress: progress)
    }

    public static func run(_ options: Options, on deployment: LocalDeployment, image: String,
                           progress: @Sendable (String) -> Void) async throws -> Report {
        var host = HostConditions.now(machine: ChannelBenchmark.machineDescription())
        let rootPID = try await deployment.client.request(.GET, "/v1/root", as: RootInfo.self).processID
        guard let parentPID = deployment.parentProcessID else { throw DeploymentError.timeout("no parent partition", log: "") }
        // One child through the whole course first: the root's and the parent's code pages and
        // malloc arenas are then in place, so what is measured below is what children cost.
        progress("warming up with one partition")
        try await warmUp(image: image, on: deployment)
        let rootBefore = try ProcessSample.of(pid: rootPID)
        let parentBefore = try ProcessSample.of(pid: parentPID)

        let names = (1...options.partitions).map { "scale\($0)" }
        let startedAt = MonotonicClock.nanoseconds()
        progress("creating and starting \(options.partitions) partitions, \(options.concurrency) at a time")
        let requested = try await createAll(names, options: options, image: image, plan: nil, start: true, on: deployment)

        progress("waiting for every partition's channels to open")
        let opened = try await waitForChannels(names, on: deployment)
        var startup: [Double] = []
        for name in names {
            guard let request = requested[name], let open = opened[name] else { continue }
            startup.append(Double(Int64(bitPattern: open &- request)) / 1e6)
        }
        let rootLoaded = try ProcessSample.of(pid: rootPID)
        let parentLoaded = try ProcessSample.of(pid: parentPID)

        progress("deleting every partition")
        try await deleteAll(names, concurrency: options.concurrency, on: deployment)
        try await Task.sleep(for: .milliseconds(1000))
        let rootAfter = try ProcessSample.of(pid: rootPID)
        let parentAfter = try ProcessSample.of(pid: parentPID)

        // Three more rounds alike: as many children made first, then started together, each
        // running the channel benchmark as soon as its channels are open; then deleted again. A
        // leak grows with every round; what the allocator keeps from earlier rounds does not (it
        // moves with how the rounds' work happened to overlap), so the smaller of the last two
        // rounds' growths is the one held to the goal.
        let plan = "bench=halting,throughput sizes=64 rtts=\(options.roundTrips) bytes=\(options.bytes)"
        var results: [ChildResult] = []
        var afterRounds: [(root: ProcessSample, parent: ProcessSample)] = []
        for round in 2...4 {
            progress("round \(round): \(options.partitions) partitions created, then started together to run the channel "
                     + "benchmark at once, then deleted")
            _ = try await createAll(names, options: options, image: image, plan: plan, start: false, on: deployment)
            try await startAll(names, on: deployment)
            let measured = try await waitForBench(names, on: deployment)
            if round == 2 { results = measured }
            try await deleteAll(names, concurrency: options.concurrency, on: deployment)
            try await Task.sleep(for: .milliseconds(1000))
            afterRounds.append((try ProcessSample.of(pid: rootPID), try ProcessSample.of(pid: parentPID)))
        }
        let rootRounds = [rootAfter] + afterRounds.map(\.root)
        let parentRounds = [parentAfter] + afterRounds.map(\.parent)
        /// The smaller growth of the last two rounds, each over the round before it.
        func growth(_ rounds: [ProcessSample]) -> Double {
            let count = rounds.count
            return min(mebibytes(rounds[count - 1], rounds[count - 2]), mebibytes(rounds[count - 2], rounds[count - 3]))
        }
        host.loadAfter = HostConditions.loadAverage()

        let count = Double(options.partitions)
        let perChild = (Double(rootLoaded.ownBytes) - Double(rootBefore.ownBytes)
            + Double(parentLoaded.ownBytes) - Double(parentBefore.ownBytes)) / count / 1_048_576
        let sorted = startup.sorted()
        let p50 = percentile(sorted, 50)
        let p99 = percentile(sorted, 99)
        let p50s = results.compactMap(\.p50).sorted()
        let p99s = results.compactMap(\.p99).sorted()
        let rates = results.compactMap(\.rate)
        let experiments = [
            BenchExperiment(
                name: "startup",
                setup: "\(options.partitions) children of 1 VP and \(options.memoryMiB) MiB with heartbeat and bench "
                    + "channels, created and started through the API with \(options.concurrency) requests in flight; "
                    + "from each create request to its guest's channels open.",
                figures: [
                    BenchFigure("create → channels open, p50", p50, unit: "ms", target: "≤ 50 ms", high: 50),
                    BenchFigure("create → channels open, p99", p99, unit: "ms", target: "≤ 250 ms", high: 250),
                    BenchFigure("children whose channels opened", Double(startup.count), unit: "children",
                                target: "all \(options.partitions)", low: count),
                    BenchFigure("all created and open", Double(opened.values.max().map { $0 &- startedAt } ?? 0) / 1e6,
                                unit: "ms"),
                ]),
            BenchExperiment(
                name: "memory",
                setup: "resident memory of the root and the parent that is not guest RAM (RssAnon + RssFile), with "
                    + "every child running against before the first, per child.",
                figures: [
                    BenchFigure("root + parent per child", perChild, unit: "MiB", target: "≤ 5 MiB", high: 5),
                    BenchFigure("root per child", (Double(rootLoaded.ownBytes) - Double(rootBefore.ownBytes)) / count / 1_048_576,
                                unit: "MiB"),
                    BenchFigure("parent per child",
                                (Double(parentLoaded.ownBytes) - Double(parentBefore.ownBytes)) / count / 1_048_576, unit: "MiB"),
                    BenchFigure("parent threads per child",
                                Double(parentLoaded.threads(named: ProcessSample.parentPartitionThreads)) / count,
                                unit: "threads"),
                ]),
            BenchExperiment(
                name: "channels",
                setup: "round 2: \(options.partitions) children, all created first and then started together, "
                    + "each running as soon as its channels are open \(options.roundTrips) halting event round trips "
                    + "of 64 B on its bench channel, then \(options.bytes >> 10) KiB of 64 B messages to the parent.",
                figures: [
                    BenchFigure("children that finished", Double(results.count), unit: "children",
                                target: "all \(options.partitions)", low: count),
                    BenchFigure("round trip p50, median child", percentile(p50s, 50), unit: "µs"),
                    BenchFigure("round trip p99, worst child", p99s.last ?? .nan, unit: "µs"),
                    // Each child's rate is over its own phase, and the phases overlap only in part,
                    // so rates are not summed: the median child's is what one child got among 64.
                    BenchFigure("64 B messages to the parent, median child", percentile(rates.sorted(), 50),
                                unit: "messages/s"),
                ]),
            BenchExperiment(
                name: "after delete",
                setup: "the root's and the parent's descriptors, threads, heap and stacks (RssAnon) after every child "
                    + "was deleted, against before the first was created; then after rounds 2-4 (the channel benchmark), "
                    + "and the heap's growth per round: the smaller of rounds 3 and 4 over the round before (a leak grows "
                    + "each round; what the allocator's arenas keep does not).",
                figures: [
                    BenchFigure("root descriptors left", Double(rootAfter.descriptors - rootBefore.descriptors),
                                unit: "descriptors", target: "0", low: -1_000_000, high: 0),
                    BenchFigure("parent descriptors left", Double(parentAfter.descriptors - parentBefore.descriptors),
                                unit: "descriptors", target: "0", low: -1_000_000, high: 0),
                    BenchFigure("root partition threads left", Double(rootAfter.threads(named: ProcessSample.rootPartitionThreads)),
                                unit: "threads", target: "0", low: -1_000_000, high: 0),
                    BenchFigure("parent partition threads left",
                                Double(parentAfter.threads(named: ProcessSample.parentPartitionThreads)),
                                unit: "threads", target: "0", low: -1_000_000, high: 0),
                    BenchFigure("root heap and stacks above the start", mebibytes(rootAfter, rootBefore), unit: "MiB",
                                target: "≤ 2 MiB", high: 2),
                    BenchFigure("parent heap and stacks above the start", mebibytes(parentAfter, parentBefore),
                                unit: "MiB", target: "≤ 2 MiB", high: 2),
                    BenchFigure("root descriptors, after rounds 2-4",
                                Double((rootRounds.map(\.descriptors).max() ?? 0) - rootBefore.descriptors),
                                unit: "descriptors", target: "0", low: -1_000_000, high: 0),
                    BenchFigure("parent descriptors, after rounds 2-4",
                                Double((parentRounds.map(\.descriptors).max() ?? 0) - parentBefore.descriptors),
                                unit: "descriptors", target: "0", low: -1_000_000, high: 0),
                    BenchFigure("root heap growth per round", growth(rootRounds), unit: "MiB",
                                target: "≤ 0.25 MiB (4 KiB per child)", high: 0.25),
                    BenchFigure("parent heap growth per round", growth(parentRounds), unit: "MiB",
                                target: "≤ 0.25 MiB (4 KiB per child)", high: 0.25),
                ]),
        ]
        return Report(host: host, partitions: options.partitions, concurrency: options.concurrency,
                      startupMilliseconds: startup,
                      root: .init(before: rootBefore, loaded: rootLoaded, after: rootAfter,
                                  afterLaterRounds: afterRounds.map(\.root)),
                      parent: .init(before: parentBefore, loaded: parentLoaded, after: parentAfter,
                                    afterLaterRounds: afterRounds.map(\.parent)),
                      experiments: experiments)
    }

    // MARK: Steps

    /// Creates one child with the same devices and plan (small), waits for its plan, deletes it.
    static func warmUp(image: String, on deployment: LocalDeployment) async throws {
        let configuration = PartitionConfiguration(
            name: "warmup", processors: 1, memoryMiB: 16,
            guest: .embedded(image: "Guest", arguments: "mode=vmbus ring-kib=64 bench=halting,throughput sizes=64 rtts=20 "
                                 + "bytes=65536", imagePath: image),
            devices: [DeviceConfiguration(kind: "heartbeat"), DeviceConfiguration(kind: "bench")])
        _ = try await deployment.create(configuration)
        try await deployment.perform("start", on: "warmup")
        _ = try await deployment.waitForConsole("warmup", containing: "bench: done", timeoutSeconds: 120)
        _ = try await deployment.client.statistics("warmup")
        try await deployment.delete("warmup")
        try await Task.sleep(for: .milliseconds(500))
    }

    /// Resident heap and stacks (RssAnon), `later` against `earlier`, in MiB: what a leak grows.
    /// Code pages (RssFile) come and go with what has run and are shared with every process
    /// running the same binary, so they are left out here.
    static func mebibytes(_ later: ProcessSample, _ earlier: ProcessSample) -> Double {
        (Double(later.anonymousBytes) - Double(earlier.anonymousBytes)) / 1_048_576
    }

    /// Creates (and with `start`, starts) every child, `concurrency` at a time; when each create
    /// request went out (CLOCK_MONOTONIC ns). Each opens its heartbeat and bench channels and
    /// then runs `plan` (the bench's `bench=…` arguments), if any.
    static func createAll(_ names: [String], options: Options, image: String, plan: String?, start: Bool,
                          on deployment: LocalDeployment) async throws -> [String: UInt64] {
        var requested: [String: UInt64] = [:]
        try await withThrowingTaskGroup(of: (String, UInt64).self) { group in
            var pending = names[...]
            func launch() {
                guard let name = pending.popFirst() else { return }
                group.addTask {
                    let requestedAt = MonotonicClock.nanoseconds()
                    let arguments = "mode=vmbus ring-kib=64" + (plan.map { " " + $0 } ?? "")
                    let configuration = PartitionConfiguration(
                        name: name, processors: 1, memoryMiB: options.memoryMiB,
                        guest: .embedded(image: "Guest", arguments: arguments, imagePath: image),
                        devices: [DeviceConfiguration(kind: "heartbeat"), DeviceConfiguration(kind: "bench")])
                    _ = try await deployment.create(configuration)
                    if start { try await deployment.perform("start", on: name) }
                    return (name, requestedAt)
                }
            }
            for _ in 0..<options.concurrency { launch() }
            while let (name, requestedAt) = try await group.next() {
                requested[name] = requestedAt
                launch()
            }
        }
        return requested
    }

    /// Waits until every child's guest reported its channels open; when each opened, on this
    /// host's CLOCK_MONOTONIC (its creation time plus the reference time the guest read then).
    static func waitForChannels(_ names: [String], on deployment: LocalDeployment,
                                timeoutSeconds: Double = 120) async throws -> [String: UInt64] {
        var opened: [String: UInt64] = [:]
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while opened.count < names.count && Date() < deadline {
            let open = Set(try await deployment.client.request(.GET, "/v1/partitions", as: [PartitionInfo].self)
                .filter { $0.status["bench.state"] == "open" && $0.status["heartbeat.sequence"] != nil }.map(\.name))
            for name in names where opened[name] == nil && open.contains(name) {
                let lines = try await deployment.console(name, lines: 50)
                guard let line = lines.first(where: { $0.contains("channels open at reference time") }),
                      let reference = ChannelBenchmark.number(after: "reference time ", in: line) else { continue }
                let created = try await deployment.client.statistics(name).createdAtNanoseconds
                opened[name] = created + UInt64(reference) * 100
            }
            if opened.count < names.count { try await Task.sleep(for: .milliseconds(200)) }
        }
        return opened
    }

    struct ChildResult {
        var p50: Double?
        var p99: Double?
        /// Messages per second of 64 B, guest → parent, as the parent timed them.
        var rate: Double?
    }

    /// Waits until every child finished its plan; what each measured.
    static func waitForBench(_ names: [String], on deployment: LocalDeployment,
                             timeoutSeconds: Double = 600) async throws -> [ChildResult] {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        var finished: [String: [String: String]] = [:]
        while finished.count < names.count && Date() < deadline {
            for info in try await deployment.client.request(.GET, "/v1/partitions", as: [PartitionInfo].self)
            where names.contains(info.name) && info.status["bench.throughput.64.intact"] != nil {
                finished[info.name] = info.status
            }
            if finished.count < names.count { try await Task.sleep(for: .milliseconds(500)) }
        }
        return finished.values.map { facts in
            ChildResult(p50: facts["bench.halting.64.p50_ns"].flatMap(Double.init).map { $0 / 1000 },
                        p99: facts["bench.halting.64.p99_ns"].flatMap(Double.init).map { $0 / 1000 },
                        rate: ChannelBenchmark.rate(facts, "throughput", 64))
        }
    }

    /// Starts every child, as fast as the API takes the requests (8 in flight).
    static func startAll(_ names: [String], on deployment: LocalDeployment) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var pending = names[...]
            for _ in 0..<8 {
                if let name = pending.popFirst() { group.addTask { try await deployment.perform("start", on: name) } }
            }
            while try await group.next() != nil {
                if let name = pending.popFirst() { group.addTask { try await deployment.perform("start", on: name) } }
            }
        }
    }

    static func deleteAll(_ names: [String], concurrency: Int, on deployment: LocalDeployment) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var pending = names[...]
            for _ in 0..<concurrency {
                if let name = pending.popFirst() { group.addTask { try await deployment.delete(name) } }
            }
            while try await group.next() != nil {
                if let name = pending.popFirst() { group.addTask { try await deployment.delete(name) } }
            }
        }
    }

    /// The `percent` percentile of sorted values (nearest rank); NaN for none.
    static func percentile(_ sorted: [Double], _ percent: Int) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let rank = Int((Double(percent) / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(sorted.count - 1, max(0, rank - 1))]
    }
}
