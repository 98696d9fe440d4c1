import ArgumentParser
import Bench
import Foundation
import GuestBuilder
import LocalDeployment

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmark the hypervisor's paths against baselines measured in the same run.",
        subcommands: [Channel.self, Scheduler.self, Scale.self])

    struct Channel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "VSC↔VSP throughput and round trips over VMBus rings, against the same ring code between host threads.")

        @Option(help: "Message sizes in bytes.") var sizes = "64,256,1024,4096,16384,65536"
        @Option(help: "Bench partitions running at once.") var partitions = 1
        @Option(help: "MiB each throughput phase moves per partition.") var mebibytes = 64
        @Option(help: "Round trips per latency phase.") var roundTrips = 2000
        @Option(help: "Runs of each throughput point (VMBus and baseline); the median is reported.") var repetitions = 5
        @Option(help: "Directory for channel.json and channel.svg.") var outputDir: String?
        @Flag(help: "Print the JSON report instead of the table.") var json = false

        func run() async throws {
            do {
                let root = try GuestBuilder.locatePackageRoot()
                let sizeList = sizes.split(separator: ",").compactMap { Int($0) }
                guard !sizeList.isEmpty, sizeList.allSatisfy({ (24...65536).contains($0) && $0 % 8 == 0 }) else {
                    throw ValidationError("--sizes must be multiples of 8 between 24 and 65536")
                }
                guard (1...100).contains(repetitions) else {
                    throw ValidationError("--repetitions must be between 1 and 100")
                }
                let options = ChannelBenchmark.Options(sizes: sizeList, partitions: max(1, partitions),
                                                       bytes: mebibytes << 20, roundTrips: roundTrips,
                                                       repetitions: repetitions)
                let directory = NSTemporaryDirectory() + "hv-bench-\(getpid())"
                let quiet = json
                let report = try await ChannelBenchmark.run(
                    options, executable: LocalDeployment.currentExecutable, packageRoot: root, runtimeDirectory: directory
                ) { message in
                    if !quiet { FileHandle.standardError.write(Data("hv bench: \(message)\n".utf8)) }
                }
                let output = outputDir ?? "\(root)/.build/bench"
                try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
                try report.json.write(toFile: "\(output)/channel.json", atomically: true, encoding: .utf8)
                try report.svg.write(toFile: "\(output)/channel.svg", atomically: true, encoding: .utf8)
                print(json ? report.json : report.table)
                if !json { print("Wrote \(output)/channel.json and \(output)/channel.svg") }
            } catch let error as ValidationError {
                throw error
            } catch {
                throw fail(error)
            }
        }
    }
}

extension BenchCommand {
    struct Scheduler: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Spinning children in contention: weights, limits and reserves against their targets, and a latency-sensitive child's round trip.")

        @Option(help: "Seconds each share is measured over.") var seconds = 5.0
        @Option(help: "Seconds of contention before each measurement.") var warmup = 1.0
        @Option(help: "Round trips of the latency child.") var roundTrips = 2000
        @Option(help: "Experiments to run (weight, limit, reserve, latency).") var experiments = "weight,limit,reserve,latency"
        @Option(help: "Directory for scheduler.json.") var outputDir: String?
        @Flag(help: "Print the JSON report instead of the table.") var json = false

        func run() async throws {
            let chosen = experiments.split(separator: ",").map(String.init)
            guard !chosen.isEmpty, chosen.allSatisfy(SchedulerBenchmark.Options.allExperiments.contains) else {
                throw ValidationError("--experiments takes a comma-separated list of weight, limit, reserve and latency")
            }
            guard seconds >= 0.5, warmup >= 0, (10...100_000).contains(roundTrips) else {
                throw ValidationError("--seconds must be at least 0.5, --warmup at least 0, --round-trips 10 to 100000")
            }
            do {
                let root = try GuestBuilder.locatePackageRoot()
                let options = SchedulerBenchmark.Options(seconds: seconds, warmup: warmup, roundTrips: roundTrips,
                                                         experiments: chosen)
                let quiet = json
                let report = try await SchedulerBenchmark.run(
                    options, executable: LocalDeployment.currentExecutable, packageRoot: root,
                    runtimeDirectory: NSTemporaryDirectory() + "hv-bench-\(getpid())"
                ) { message in
                    if !quiet { FileHandle.standardError.write(Data("hv bench: \(message)\n".utf8)) }
                }
                let output = outputDir ?? "\(root)/.build/bench"
                try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
                try report.json.write(toFile: "\(output)/scheduler.json", atomically: true, encoding: .utf8)
                print(json ? report.json : report.table)
                if !json { print("Wrote \(output)/scheduler.json") }
            } catch {
                throw fail(error)
            }
        }
    }

    struct Scale: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Many small children at once: create → channels open, root and parent memory per child, a channel benchmark across all, nothing left after delete.")

        @Option(help: "Children to run at once.") var partitions = 64
        @Option(help: "MiB of RAM per child.") var memory = 16
        @Option(help: "Create-and-start requests in flight at once.") var concurrency = 4
        @Option(help: "Round trips each child times in the channel benchmark.") var roundTrips = 200
        @Option(help: "KiB each child streams to the parent in the channel benchmark.") var kibibytes = 1024
        @Option(help: "Directory for scale.json.") var outputDir: String?
        @Flag(help: "Print the JSON report instead of the table.") var json = false

        func run() async throws {
            guard (1...512).contains(partitions), (1...64).contains(concurrency), memory >= 16, memory % 2 == 0 else {
                throw ValidationError("--partitions must be 1-512, --concurrency 1-64, --memory an even number from 16")
            }
            do {
                let root = try GuestBuilder.locatePackageRoot()
                let options = ScaleBenchmark.Options(partitions: partitions, memoryMiB: memory, concurrency: concurrency,
                                                     roundTrips: roundTrips, bytes: kibibytes << 10)
                let quiet = json
                let report = try await ScaleBenchmark.run(
                    options, executable: LocalDeployment.currentExecutable, packageRoot: root,
                    runtimeDirectory: NSTemporaryDirectory() + "hv-bench-\(getpid())"
                ) { message in
                    if !quiet { FileHandle.standardError.write(Data("hv bench: \(message)\n".utf8)) }
                }
                let output = outputDir ?? "\(root)/.build/bench"
                try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
                try report.json.write(toFile: "\(output)/scale.json", atomically: true, encoding: .utf8)
                print(json ? report.json : report.table)
                if !json { print("Wrote \(output)/scale.json") }
            } catch {
                throw fail(error)
            }
        }
    }
}
