import ArgumentParser
import Bench
import Foundation
import GuestBuilder
import LocalDeployment

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmark the hypervisor's paths against baselines measured in the same run.",
        subcommands: [Channel.self, Storage.self, DiskEngines.self, Network.self, Scheduler.self, Scale.self, Soak.self,
                      Neighbours.self])

    struct Network: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Synthetic NIC frames/s and Gbit/s guest→host, host→guest and guest→guest, and ping, against host-only TAP, veth and ring baselines measured in the same run (needs root).")

        @Option(help: "Frame sizes in bytes.") var sizes = "64,1514,9014"
        @Option(help: "Frames per direction and size.") var frames = 100_000
        @Option(help: "Echo requests per ping measurement.") var pings = 200
        @Option(help: "The switches' MTU.") var mtu = 9000
        @Option(help: "Directory for network.json and network.svg.") var outputDir: String?
        @Flag(help: "Print the JSON report instead of the table.") var json = false

        func run() async throws {
            do {
                let root = try GuestBuilder.locatePackageRoot()
                let sizeList = sizes.split(separator: ",").compactMap { Int($0) }
                guard !sizeList.isEmpty, sizeList.allSatisfy({ (30...9018).contains($0) && $0 <= mtu + 14 }) else {
                    throw ValidationError("--sizes must be between 30 and MTU + 14 bytes")
                }
                guard (1000...10_000_000).contains(frames), (1...100_000).contains(pings), (576...9000).contains(mtu) else {
                    throw ValidationError("--frames 1000-10000000, --pings 1-100000, --mtu 576-9000")
                }
                let directory = NSTemporaryDirectory() + "hv-bench-\(getpid())"
                let report = try await NetworkBenchmark.run(
                    NetworkBenchmark.Options(sizes: sizeList, frames: frames, pings: pings, mtu: mtu),
                    executable: LocalDeployment.currentExecutable, packageRoot: root, runtimeDirectory: directory,
                    progress: BenchOutput.progress(quiet: json))
                try BenchOutput.publish(json: report.json, svg: report.svg, table: report.table, name: "network", printJSON: json,
                                        directory: outputDir, packageRoot: root)
            } catch let error as ValidationError {
                throw error
            } catch {
                throw fail(error)
            }
        }
    }

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
                let report = try await ChannelBenchmark.run(
                    options, executable: LocalDeployment.currentExecutable, packageRoot: root, runtimeDirectory: directory,
                    progress: BenchOutput.progress(quiet: json))
                try BenchOutput.publish(json: report.json, svg: report.svg, table: report.table, name: "channel", printJSON: json,
                                        directory: outputDir, packageRoot: root)
            } catch let error as ValidationError {
                throw error
            } catch {
                throw fail(error)
            }
        }
    }

    struct Storage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disk I/O through the synthetic SCSI controller and the emulated IDE disk, against fio on the same file.")

        @Option(help: "The backing file (created and filled if missing or of another size).") var file: String?
        @Option(help: "Its size: bytes, or with K, M or G.") var size = "1G"
        @Option(help: "Seconds per point, path and round.") var seconds = 1.0
        @Option(help: "Rounds: each path is measured this often, taking turns with fio; each figure is its path's median round.")
        var rounds = 3
        @Option(help: "Points as rw:blocksize:queuedepth, comma-separated (default: the standard eight).") var points: String?
        @Option(help: "buffered, direct or both.") var mode = "both"
        @Option(help: "Channels the guest uses (the primary and its sub-channels; default: one per two host cores).")
        var channels: Int?
        @Option(help: "Directory for storage.json and storage.svg.") var outputDir: String?
        @Flag(help: "Print the JSON report instead of the table.") var json = false

        func run() async throws {
            do {
                let root = try GuestBuilder.locatePackageRoot()
                guard let bytes = DiskCommand.Create.bytes(size), bytes >= 16 << 20, bytes % (1 << 20) == 0 else {
                    throw ValidationError("--size must be whole MiB, at least 16M")
                }
                let modes: [Bool] = switch mode {
                case "buffered": [false]
                case "direct": [true]
                case "both": [false, true]
                default: throw ValidationError("--mode is buffered, direct or both")
                }
                var list = StorageBenchmark.Point.standard
                if let points {
                    list = try points.split(separator: ",").map { text in
                        let fields = text.split(separator: ":")
                        guard fields.count == 3, ["read", "write", "randread", "randwrite"].contains(String(fields[0])),
                              let blockSize = DiskCommand.Create.bytes(String(fields[1])), blockSize >= 512, blockSize % 512 == 0,
                              blockSize <= 1 << 20, let depth = Int(fields[2]), (1...256).contains(depth) else {
                            throw ValidationError("a point is rw:blocksize:queuedepth, e.g. randread:4K:32 (not \(text))")
                        }
                        return StorageBenchmark.Point(rw: String(fields[0]), blockSize: Int(blockSize), queueDepth: depth)
                    }
                }
                let channels = channels ?? StorageBenchmark.Options.defaultChannels
                guard (1...64).contains(channels), seconds >= 0.5, (1...15).contains(rounds) else {
                    throw ValidationError("--channels 1-64, --seconds ≥ 0.5, --rounds 1-15")
                }
                let output = outputDir ?? "\(root)/.build/bench"
                try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
                let options = StorageBenchmark.Options(file: file ?? "\(output)/storage-bench.img", fileBytes: bytes, seconds: seconds,
                                                       points: list, directModes: modes, channels: channels, rounds: rounds)
                let report = try await StorageBenchmark.run(
                    options, executable: LocalDeployment.currentExecutable, packageRoot: root,
                    runtimeDirectory: NSTemporaryDirectory() + "hv-bench-storage-\(getpid())",
                    progress: BenchOutput.progress(quiet: json))
                try report.json.write(toFile: "\(output)/storage.json", atomically: true, encoding: .utf8)
                try report.svg.write(toFile: "\(output)/storage.svg", atomically: true, encoding: .utf8)
                print(json ? report.json : report.table)
                if !json { print("Wrote \(output)/storage.json and \(output)/storage.svg") }
            } catch let error as ValidationError {
                throw error
            } catch {
                throw fail(error)
            }
        }
    }

    struct DiskEngines: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "disk-engines",
            abstract: "Random 4 KiB IOPS of the disk back end's engines on a file, against fio on the same file.")

        @Option(help: "The image file (created and filled if missing or of another size).") var file: String?
        @Option(help: "Its size: bytes, or with K, M or G.") var size = "1G"
        @Option(help: "Seconds per measurement.") var seconds = 4.0
        @Option(help: "Patterns: randread, randwrite.") var patterns = "randread,randwrite"
        @Option(help: "Queue depths.") var queueDepths = "1,32"
        @Option(help: "Engines: io_uring, io_uring-single, threads:4, threads:16.") var engines = "io_uring,io_uring-single,threads:4"
        @Flag(help: "Use O_DIRECT.") var direct = false
        @Flag(help: "Leave fio out.") var noFio = false
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            do {
                let root = try GuestBuilder.locatePackageRoot()
                guard let bytes = DiskCommand.Create.bytes(size), bytes >= 1 << 20 else { throw ValidationError("--size is at least 1M") }
                let depths = queueDepths.split(separator: ",").compactMap { Int($0) }.filter { (1...4096).contains($0) }
                let progress = BenchOutput.progress(quiet: json)
                let fio = noFio ? nil : try Fio.locate(progress: progress)
                try FileManager.default.createDirectory(atPath: "\(root)/.build/bench", withIntermediateDirectories: true)
                let rows = try DiskEngineBenchmark.run(
                    file: file ?? "\(root)/.build/bench/disk-engines.img", bytes: bytes, seconds: seconds,
                    patterns: patterns.split(separator: ",").map(String.init), queueDepths: depths, direct: direct,
                    engines: engines.split(separator: ",").map(String.init), fio: fio, progress: progress)
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                    print(String(decoding: try encoder.encode(rows), as: UTF8.self))
                } else {
                    print(DiskEngineBenchmark.table(rows))
                }
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
                let report = try await SchedulerBenchmark.run(
                    options, executable: LocalDeployment.currentExecutable, packageRoot: root,
                    runtimeDirectory: NSTemporaryDirectory() + "hv-bench-\(getpid())",
                    progress: BenchOutput.progress(quiet: json))
                try BenchOutput.publish(json: report.json, table: report.table, name: "scheduler", printJSON: json,
                                        directory: outputDir, packageRoot: root)
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
                let report = try await ScaleBenchmark.run(
                    options, executable: LocalDeployment.currentExecutable, packageRoot: root,
                    runtimeDirectory: NSTemporaryDirectory() + "hv-bench-\(getpid())",
                    progress: BenchOutput.progress(quiet: json))
                try BenchOutput.publish(json: report.json, table: report.table, name: "scale", printJSON: json,
                                        directory: outputDir, packageRoot: root)
            } catch {
                throw fail(error)
            }
        }
    }
}
