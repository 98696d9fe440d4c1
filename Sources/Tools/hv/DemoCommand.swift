import ArgumentParser
import Bench
import Foundation
import GuestBuilder
import LocalDeployment
import ManagementAPI

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Start a root and a parent, run child partitions from Partitions/, show their round trips, a VMBus bench and processor weights, stop everything.")

    @Option(help: "Where the demo's sockets and logs go (default: a fresh temporary directory).")
    var runtimeDir: String?

    func run() async throws {
        do {
            let root = try GuestBuilder.locatePackageRoot()
            let directory = runtimeDir ?? NSTemporaryDirectory() + "hv-demo-\(getpid())"
            print("Building the guest and starting the root scheduler and the parent partition (logs in \(directory))…")
            let deployment = try await LocalDeployment.start(executable: LocalDeployment.currentExecutable,
                                                             runtimeDirectory: directory)
            defer { deployment.stop() }
            let names = ["alpha", "beta"]
            for name in names {
                let info = try await deployment.createPartition(configurationPath: "\(root)/Partitions/\(name).json")
                try await deployment.perform("start", on: info.name)
                print("  \(info.name): \(info.processors) VP, \(info.memoryMiB) MiB, started")
            }
            var reports: [(String, ProbeReport)] = []
            for name in names {
                _ = try await deployment.waitForConsole(name, containing: "probe: done", timeoutSeconds: 120)
                reports.append((name, ProbeReport(lines: try await deployment.console(name, lines: 2000))))
            }
            print("")
            print("Round trips measured by each guest (median / 99th percentile), with the raw cost of a PIO exit")
            print("to the root measured in the same run:")
            print("")
            let rows = reports.map { name, report in
                [name, format(report.messageInterrupt), format(report.messagePolled), format(report.event),
                 format(report.pioExit), ratio(report.messageInterrupt, report.pioExit), ratio(report.event, report.pioExit)]
            }
            print(Table(headers: ["PARTITION", "MESSAGE (SINT IRQ)", "MESSAGE (POLLED)", "EVENT", "PIO EXIT",
                                  "MSG/PIO", "EVENT/PIO"], rows: rows).rendered)
            print("")
            for (name, report) in reports {
                let skew = report.referenceSkew.map { String(format: "%.1f µs", Double($0) / 10) } ?? "n/a"
                let statuses = report.hostileStatuses.sorted { $0.key < $1.key }
                    .map { "\($0.key)=0x\(String($0.value, radix: 16))" }.joined(separator: " ")
                print("\(name): reference TSC page vs TIME_REF_COUNT skew \(skew); hostile hypercalls: \(statuses)")
            }
            for name in names { try await deployment.perform("stop", on: name) }

            print("")
            print("VMBus: a bench child (Partitions/bench.json) against the same ring code between two host")
            print("threads, measured now (the full sweep is `hv bench channel`):")
            print("")
            let options = ChannelBenchmark.Options(sizes: [64, 4096], partitions: 1, bytes: 16 << 20, roundTrips: 500)
            let report = try await ChannelBenchmark.run(options, on: deployment, packageRoot: root) { _ in }
            print(report.table)
            try await demoStorage(on: deployment, root: root, directory: directory)
            print("")
            if getuid() == 0 && access("/dev/net/tun", R_OK | W_OK) == 0 {
                print("Network: children's synthetic NICs on a TAP (internal switch) and across a private switch, against")
                print("a TAP and a veth pair driven by host threads, measured now (the full sweep is `hv bench network`):")
                print("")
                do {
                    let network = try await NetworkBenchmark.run(
                        NetworkBenchmark.Options(sizes: [64, 1514], frames: 20_000, pings: 200, mtu: 1500), on: deployment,
                        packageRoot: root) { _ in }
                    print(network.table)
                } catch {
                    print("Network: could not run: \(error)")
                }
            } else {
                print("Network: skipped (creating TAPs and network namespaces needs root and /dev/net/tun; see `hv bench network`).")
            }

            print("")
            print("Processor weights: two children of spinning processors, weights 100 and 300, contend for this")
            print("host's processors; the root's accounting shows the CPU time each got (the full set of")
            print("experiments is `hv bench scheduler`):")
            print("")
            let image = try await LocalDeployment.buildGuest(packageRoot: root)
            let weights = try await SchedulerBenchmark.run(
                SchedulerBenchmark.Options(seconds: 2, warmup: 0.5, experiments: ["weight"]), on: deployment, image: image
            ) { _ in }
            print(weights.table)
            deployment.stop()
            print("")
            print("Stopped the partitions, the parent partition and the root scheduler.")
        } catch {
            throw fail(error)
        }
    }

    /// A short `hv bench storage`: one file behind a bench child's synthetic SCSI controller and
    /// its emulated IDE disk, and fio on the host, at two points.
    private func demoStorage(on deployment: LocalDeployment, root: String, directory: String) async throws {
        print("")
        print("Storage: one file through the synthetic SCSI controller (storvsc ↔ VSP), the same guest's")
        print("emulated IDE disk, and fio on the host, measured now (the full sweep is `hv bench storage`):")
        print("")
        let file = directory + "/demo-disk.img"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let options = StorageBenchmark.Options(
            file: file, fileBytes: 256 << 20, seconds: 1,
            points: [StorageBenchmark.Point(rw: "randread", blockSize: 4096, queueDepth: 32),
                     StorageBenchmark.Point(rw: "read", blockSize: 1 << 20, queueDepth: 4)],
            directModes: [false], rounds: 1)
        do {
            let report = try await StorageBenchmark.run(options, on: deployment, packageRoot: root) { _ in }
            print(report.table)
        } catch {
            print("(storage benchmark skipped: \(error))")
        }
    }

    private func format(_ latency: ProbeReport.Latency?) -> String {
        guard let latency else { return "failed" }
        return String(format: "%.1f / %.1f µs", Double(latency.p50) / 1000, Double(latency.p99) / 1000)
    }

    private func ratio(_ latency: ProbeReport.Latency?, _ base: ProbeReport.Latency?) -> String {
        guard let latency, let base, base.p50 > 0 else { return "-" }
        return String(format: "%.1fx", Double(latency.p50) / Double(base.p50))
    }
}
