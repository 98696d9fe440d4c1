import ArgumentParser
import Foundation
import FuzzSupport
import FuzzTargets
import Glibc
import LinuxSupport
import Synchronization

/// `hv fuzz`: long runs of the fuzz targets (`FuzzRegistry`). Each target runs in a worker
/// process (this executable with `--worker`), so a trap or a hang is caught and reported with the
/// case it happened after, and the next target still runs.
struct FuzzCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz",
        abstract: "Fuzz a guest- or user-facing surface: seeded generated and mutated inputs, traps and hangs caught.",
        discussion: "TARGET is a name from --list, or `all`. A run replays exactly from its seed; --first starts at a case's session.")

    @Argument(help: "The target (see --list), or all.") var target: String?
    @Option(help: "Cases to run per target.") var cases = 100_000
    @Option(help: "The run's seed.") var seed: UInt64 = 1
    @Option(help: "The first case (rounded down to the start of its session), to replay a finding.") var first = 0
    @Option(help: "Seconds without progress after which a worker counts as hung.") var hangSeconds = 60
    @Flag(help: "List the targets.") var list = false
    @Flag(help: .hidden) var worker = false

    func run() throws {
        if list || target == nil {
            for target in FuzzRegistry.targets { print("\(target.name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(target.summary)") }
            return
        }
        guard let target else { return }
        let targets = target == "all" ? FuzzRegistry.targets : FuzzRegistry.target(named: target).map { [$0] } ?? []
        guard !targets.isEmpty else {
            throw ValidationError("No fuzz target \(target): choose one of \(FuzzRegistry.targets.map { $0.name }.joined(separator: ", ")), or all.")
        }
        if worker, let only = targets.first {
            runWorker(only)
            return
        }
        var failed = false
        for target in targets {
            let outcome = supervise(target)
            emit(outcome.line)
            failed = failed || !outcome.clean
        }
        if failed { throw ExitCode(1) }
    }

    /// Runs the target here, printing progress lines and the report as JSON.
    private func runWorker(_ target: any FuzzTarget.Type) {
        let progress = FuzzRunner.Progress()
        let reporter = try? OSThread.spawn(name: "progress") {
            while true {
                emit("progress \(progress.completed.load(ordering: .relaxed))")
                MonotonicClock.sleep(.milliseconds(500))
            }
        }
        _ = reporter
        let report = FuzzRunner.run(target, seed: seed, cases: cases, first: first, progress: progress)
        let summary = WorkerReport(cases: report.cases, nanoseconds: report.nanoseconds, firstCase: report.firstCase,
                                   findings: report.findings.map { "\($0)" })
        if let data = try? JSONEncoder().encode(summary) { emit("report " + String(decoding: data, as: UTF8.self)) }
        Glibc.exit(0)
    }

    /// Writes a line to standard output at once (unbuffered: the supervisor reads it live).
    private func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    struct WorkerReport: Codable {
        var cases: Int
        var nanoseconds: UInt64
        var firstCase: Int
        var findings: [String]
    }

    struct Outcome {
        var line: String
        var clean: Bool
    }

    /// Runs a worker for `target` and watches it.
    private func supervise(_ target: any FuzzTarget.Type) -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0])
        process.arguments = ["fuzz", target.name, "--cases", "\(cases)", "--seed", "\(seed)", "--first", "\(first)", "--worker"]
        let pipe = Pipe()
        process.standardOutput = pipe
        let state = Mutex<(progress: Int, report: WorkerReport?, buffer: String)>((0, nil, ""))
        let started = MonotonicClock.nanoseconds()
        do {
            try process.run()
        } catch {
            return Outcome(line: "\(target.name): cannot start a worker: \(error)", clean: false)
        }
        let handle = pipe.fileHandleForReading
        let reader = try? OSThread.spawn(name: "fuzz-reader") {
            while true {
                let data = handle.availableData
                if data.isEmpty { return }
                state.withLock { state in
                    state.buffer += String(decoding: data, as: UTF8.self)
                    while let newline = state.buffer.firstIndex(of: "\n") {
                        let line = String(state.buffer[..<newline])
                        state.buffer.removeSubrange(...newline)
                        if line.hasPrefix("progress "), let done = Int(line.dropFirst(9)) {
                            state.progress = done
                        } else if line.hasPrefix("report "),
                                  let report = try? JSONDecoder().decode(WorkerReport.self, from: Data(line.dropFirst(7).utf8)) {
                            state.report = report
                        }
                    }
                }
            }
        }
        var lastProgress = -1
        var lastChange = MonotonicClock.nanoseconds()
        var hung = false
        while process.isRunning {
            MonotonicClock.sleep(.milliseconds(200))
            let progress = state.withLock { $0.progress }
            if progress != lastProgress {
                lastProgress = progress
                lastChange = MonotonicClock.nanoseconds()
            } else if MonotonicClock.nanoseconds() - lastChange > UInt64(hangSeconds) * 1_000_000_000 {
                hung = true
                kill(process.processIdentifier, SIGKILL)
            }
        }
        process.waitUntilExit()
        reader?.join()
        let (progress, report) = state.withLock { ($0.progress, $0.report) }
        let at = first + progress
        if hung {
            return Outcome(line: "\(target.name): HANG after case \(at) of seed \(seed) (no progress for \(hangSeconds) s); "
                           + "replay with `hv fuzz \(target.name) --seed \(seed) --first \(at)`", clean: false)
        }
        if process.terminationReason == .uncaughtSignal || report == nil {
            return Outcome(line: "\(target.name): TRAP (signal \(process.terminationStatus)) after case \(at) of seed \(seed); "
                           + "replay with `hv fuzz \(target.name) --seed \(seed) --first \(at)`", clean: false)
        }
        guard let report else { return Outcome(line: "\(target.name): no report", clean: false) }
        let seconds = Double(report.nanoseconds) / 1e9
        let rate = seconds > 0 ? Double(report.cases) / seconds : 0
        var line = "\(target.name): \(report.cases) cases (seed \(seed), from case \(report.firstCase)) in "
            + String(format: "%.1f s, %.0f cases/s", seconds, rate) + "; \(report.findings.count) findings, 0 traps, 0 hangs"
        _ = started
        for finding in report.findings.prefix(10) { line += "\n  \(finding)" }
        return Outcome(line: line, clean: report.findings.isEmpty)
    }
}
