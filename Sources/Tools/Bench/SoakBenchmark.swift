import Foundation
import LocalDeployment
import ManagementAPI

/// `hv bench soak`: many children with every channel busy for a chosen time, while a chaos loop
/// kills the parent partition with SIGKILL and starts it again and pauses and resumes children
/// (Docs/benchmarks.md). It reports the root's and the parent's resident memory over time, the
/// messages lost, the partitions that crashed, and whether every child still shuts down through
/// its shutdown integration service at the end.
public enum SoakBenchmark {
    public struct Options: Sendable {
        public var partitions: Int
        public var seconds: Int
        /// Seconds between parent kills (0: never).
        public var killEvery: Int
        /// Seconds between pausing (and, a second later, resuming) one child, in turn (0: never).
        public var pauseEvery: Int
        /// Seconds between memory samples.
        public var sampleEvery: Int

        public init(partitions: Int = 16, seconds: Int = 600, killEvery: Int = 60, pauseEvery: Int = 20,
                    sampleEvery: Int = 10) {
            self.partitions = partitions
            self.seconds = seconds
            self.killEvery = killEvery
            self.pauseEvery = pauseEvery
            self.sampleEvery = sampleEvery
        }
    }

    /// Resident memory of the root and the parent at one moment.
    public struct Sample: Codable, Sendable {
        public var seconds: Double
        public var root_kib: Int
        public var parent_kib: Int
        /// Parent processes started so far (1 + kills).
        public var parent_generation: Int
    }

    /// One child at the end.
    public struct Child: Codable, Sendable {
        public var name: String
        public var state: String
        public var pings: UInt64
        public var pongs: UInt64
        public var lost: UInt64
        public var duplicates: UInt64
        /// Whether its heartbeat answered after the last parent restart.
        public var heartbeat_after_last_restart: Bool
        /// Whether `shutdown` at the end powered it off.
        public var shut_down: Bool
    }

    public struct Report: Codable, Sendable {
        public var partitions: Int
        public var seconds: Int
        public var parent_kills: Int
        /// Seconds from each kill until the new parent was connected.
        public var restart_seconds: [Double]
        public var pauses: Int
        public var samples: [Sample]
        public var children: [Child]
        /// Root RSS growth from the first sample after warm-up (the first restart) to the last, %.
        public var root_growth_percent: Double
        /// Growth of the parent's RSS at the end of its life from its first life to its last, %.
        public var parent_growth_percent: Double
        public var lost_messages: UInt64
        public var crashed_partitions: Int
        public var failed_shutdowns: Int
        public var date: String
        public var machine: String
    }

    /// The soak on a root and parent of its own.
    public static func run(_ options: Options, executable: String, packageRoot: String, runtimeDirectory: String,
                           progress: @Sendable (String) -> Void) async throws -> Report {
        progress("starting the root scheduler and the parent partition")
        let deployment = try await LocalDeployment.start(executable: executable, runtimeDirectory: runtimeDirectory)
        defer { deployment.stop() }
        return try await run(options, on: deployment, packageRoot: packageRoot, progress: progress)
    }

    public static func run(_ options: Options, on deployment: LocalDeployment, packageRoot: String,
                           progress: @Sendable (String) -> Void) async throws -> Report {
        let count = max(1, options.partitions)
        var names: [String] = []
        for index in 1...count {
            let name = "soak\(index)"
            _ = try await deployment.createPartition(configurationPath: "\(packageRoot)/Partitions/soak.json", overrideName: name)
            names.append(name)
        }
        progress("starting \(count) children")
        for name in names { try await deployment.perform("start", on: name) }
        for name in names { _ = try await deployment.waitForConsole(name, containing: "soak: started", timeoutSeconds: 120) }

        progress("soaking for \(options.seconds) s: a parent kill every \(options.killEvery) s, a pause every \(options.pauseEvery) s")
        let start = Date()
        var samples: [Sample] = []
        var restarts: [Double] = []
        var parentPeaks: [Int] = []
        var lastParentKiB = 0
        var pauses = 0
        var generation = 1
        var nextSample = 0.0
        var nextKill = Double(options.killEvery)
        var nextPause = Double(options.pauseEvery)
        var lastRestartAt = 0.0
        while true {
            let now = Date().timeIntervalSince(start)
            if now >= Double(options.seconds) { break }
            if now >= nextSample {
                let sample = Sample(seconds: now.rounded(), root_kib: residentKiB(deployment.rootProcessID),
                                    parent_kib: residentKiB(deployment.parentProcessID), parent_generation: generation)
                samples.append(sample)
                lastParentKiB = sample.parent_kib
                progress("t=\(Int(now)) s: root \(sample.root_kib) KiB, parent \(sample.parent_kib) KiB (parent #\(generation))")
                nextSample += Double(max(1, options.sampleEvery))
            }
            if options.killEvery > 0, now >= nextKill {
                parentPeaks.append(max(lastParentKiB, residentKiB(deployment.parentProcessID)))
                let killed = Date()
                try await deployment.restartParent()
                generation += 1
                restarts.append(Date().timeIntervalSince(killed))
                lastRestartAt = Date().timeIntervalSince(start)
                progress("t=\(Int(now)) s: parent killed and restarted (\(String(format: "%.2f", restarts.last ?? 0)) s)")
                nextKill += Double(options.killEvery)
            }
            if options.pauseEvery > 0, now >= nextPause {
                let name = names[pauses % names.count]
                if (try? await deployment.perform("pause", on: name)) != nil {
                    try await Task.sleep(for: .seconds(1))
                    try await deployment.perform("resume", on: name)
                    pauses += 1
                }
                nextPause += Double(options.pauseEvery)
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        parentPeaks.append(max(lastParentKiB, residentKiB(deployment.parentProcessID)))
        samples.append(Sample(seconds: Date().timeIntervalSince(start).rounded(), root_kib: residentKiB(deployment.rootProcessID),
                              parent_kib: residentKiB(deployment.parentProcessID), parent_generation: generation))

        // Heartbeats after the last restart: a heartbeat answered since then, or one within 15 s.
        progress("checking the children's heartbeats, then shutting them down")
        let lastRestart = start.addingTimeInterval(lastRestartAt)
        var beating: Set<String> = []
        let heartbeatDeadline = Date().addingTimeInterval(15)
        while beating.count < names.count && Date() < heartbeatDeadline {
            for name in names where !beating.contains(name) {
                if let info = try? await deployment.info(name), let seen = info.status["heartbeat.seen"],
                   let date = ISO8601DateFormatter().date(from: seen), date > lastRestart {
                    beating.insert(name)
                }
            }
            try await Task.sleep(for: .milliseconds(500))
        }

        var children: [Child] = []
        var states: [String: String] = [:]
        for name in names { states[name] = try await deployment.info(name).state }
        var counts: [String: (UInt64, UInt64, UInt64, UInt64)] = [:]
        for name in names {
            let line = try await deployment.console(name, lines: 200).last { $0.contains("soak: pings=") } ?? ""
            counts[name] = (number("pings=", line), number("pongs=", line), number("lost=", line), number("duplicates=", line))
        }
        for name in names where states[name] == "running" { _ = try? await deployment.perform("shutdown", on: name) }
        var shutDown: Set<String> = []
        let shutdownDeadline = Date().addingTimeInterval(60)
        while shutDown.count < names.count && Date() < shutdownDeadline {
            for name in names where !shutDown.contains(name) {
                if let info = try? await deployment.info(name), info.state == "stopped" { shutDown.insert(name) }
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        for name in names {
            let (pings, pongs, lost, duplicates) = counts[name] ?? (0, 0, 0, 0)
            children.append(Child(name: name, state: states[name] ?? "?", pings: pings, pongs: pongs, lost: lost,
                                  duplicates: duplicates, heartbeat_after_last_restart: beating.contains(name),
                                  shut_down: shutDown.contains(name)))
            try? await deployment.delete(name)
        }

        // Warm-up ends with the first restart: the root has met every child and every parent-side
        // structure it keeps; from there on its memory should stay flat.
        let warm = samples.first { $0.parent_generation >= 2 } ?? samples.first
        let rootGrowth = growth(from: warm?.root_kib ?? 0, to: samples.last?.root_kib ?? 0)
        let parentGrowth = growth(from: parentPeaks.dropFirst().first ?? parentPeaks.first ?? 0, to: parentPeaks.last ?? 0)
        return Report(partitions: count, seconds: options.seconds, parent_kills: restarts.count, restart_seconds: restarts,
                      pauses: pauses, samples: samples, children: children, root_growth_percent: rootGrowth,
                      parent_growth_percent: parentGrowth, lost_messages: children.reduce(0) { $0 + $1.lost },
                      crashed_partitions: children.filter { $0.state == "crashed" }.count,
                      failed_shutdowns: children.filter { !$0.shut_down }.count,
                      date: ISO8601DateFormatter().string(from: Date()), machine: ChannelBenchmark.machineDescription())
    }

    static func growth(from first: Int, to last: Int) -> Double {
        first > 0 ? (Double(last) - Double(first)) / Double(first) * 100 : 0
    }

    /// VmRSS of process `pid` in KiB (0 when it is not running).
    static func residentKiB(_ pid: Int32?) -> Int {
        guard let pid, let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    static func number(_ marker: String, _ line: String) -> UInt64 {
        guard let range = line.range(of: marker) else { return 0 }
        return UInt64(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
    }
}

extension SoakBenchmark.Report {
    /// The report as a table: memory over time, then the verdicts.
    public var table: String {
        var lines = ["SECONDS  ROOT KiB  PARENT KiB  PARENT #"]
        for sample in samples {
            lines.append(String(format: "%7.0f  %8d  %10d  %8d", sample.seconds, sample.root_kib, sample.parent_kib,
                                sample.parent_generation))
        }
        let restartsText = restart_seconds.isEmpty ? "-" : String(format: "%.2f-%.2f s", restart_seconds.min() ?? 0,
                                                                    restart_seconds.max() ?? 0)
        let pings = children.reduce(UInt64(0)) { $0 + $1.pings }
        let duplicates = children.reduce(UInt64(0)) { $0 + $1.duplicates }
        lines += [
            "",
            "\(partitions) children for \(seconds) s; \(parent_kills) parent kills (back in \(restartsText)), \(pauses) pauses.",
            String(format: "Root RSS growth after warm-up: %.1f %%; parent RSS growth (end of life, first to last): %.1f %%.",
                   root_growth_percent, parent_growth_percent),
            "Pings \(pings), lost \(lost_messages), answered twice \(duplicates); crashed partitions \(crashed_partitions); "
                + "heartbeat after the last restart \(children.filter(\.heartbeat_after_last_restart).count)/\(children.count); "
                + "shut down at the end \(children.count - failed_shutdowns)/\(children.count).",
            "\(machine); \(date).",
        ]
        return lines.joined(separator: "\n")
    }

    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}
