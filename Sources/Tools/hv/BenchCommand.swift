import ArgumentParser
import Bench
import Foundation
import GuestBuilder
import LocalDeployment

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmark the hypervisor's paths against baselines measured in the same run.",
        subcommands: [Channel.self, Soak.self, Neighbours.self])

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
