import ArgumentParser
import Bench
import Foundation
import GuestBuilder
import LocalDeployment

extension BenchCommand {
    struct Soak: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Many busy children for a while, the parent killed and restarted, children paused and resumed: memory over time, messages lost, partitions crashed.")

        @Option(help: "Children running at once.") var partitions = 16
        @Option(help: "How long to soak, in seconds.") var seconds = 600
        @Option(help: "Seconds between SIGKILLs of the parent partition (0: never).") var killEvery = 60
        @Option(help: "Seconds between pausing and resuming a child, in turn (0: never).") var pauseEvery = 20
        @Option(help: "Seconds between memory samples.") var sampleEvery = 10
        @Option(help: "Directory for soak.json.") var outputDir: String?
        @Flag(help: "Print the JSON report instead of the table.") var json = false

        func run() async throws {
            do {
                guard (1...64).contains(partitions), seconds > 0, killEvery >= 0, pauseEvery >= 0, sampleEvery > 0 else {
                    throw ValidationError("--partitions must be 1-64 and the times positive")
                }
                let root = try GuestBuilder.locatePackageRoot()
                let options = SoakBenchmark.Options(partitions: partitions, seconds: seconds, killEvery: killEvery,
                                                    pauseEvery: pauseEvery, sampleEvery: sampleEvery)
                let report = try await SoakBenchmark.run(
                    options, executable: LocalDeployment.currentExecutable, packageRoot: root,
                    runtimeDirectory: NSTemporaryDirectory() + "hv-soak-\(getpid())",
                    progress: BenchOutput.progress(quiet: json))
                try BenchOutput.publish(json: report.json, table: report.table, name: "soak", printJSON: json,
                                        directory: outputDir, packageRoot: root)
            } catch let error as ValidationError {
                throw error
            } catch {
                throw fail(error)
            }
        }
    }

    struct Neighbours: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A child's control-path round trips alone and beside a child that floods the parent through the root.")

        @Option(help: "Round trips of each kind.") var iterations = 2000
        @Option(help: "Neighbours to measure beside (spin, com1, echo).") var floods = "spin,com1,echo"
        @Option(help: "Directory for neighbours.json.") var outputDir: String?
        @Flag(help: "Print the JSON report instead of the table.") var json = false

        func run() async throws {
            do {
                let kinds = floods.split(separator: ",").map(String.init)
                guard (10...100_000).contains(iterations), kinds.allSatisfy({ ["spin", "com1", "echo"].contains($0) }) else {
                    throw ValidationError("--iterations must be 10-100000 and --floods among spin, com1, echo")
                }
                let root = try GuestBuilder.locatePackageRoot()
                let report = try await NeighboursBenchmark.run(
                    NeighboursBenchmark.Options(iterations: iterations, floods: kinds),
                    executable: LocalDeployment.currentExecutable, packageRoot: root,
                    runtimeDirectory: NSTemporaryDirectory() + "hv-neighbours-\(getpid())",
                    progress: BenchOutput.progress(quiet: json))
                try BenchOutput.publish(json: report.json, table: report.table, name: "neighbours", printJSON: json,
                                        directory: outputDir, packageRoot: root)
            } catch let error as ValidationError {
                throw error
            } catch {
                throw fail(error)
            }
        }
    }
}
