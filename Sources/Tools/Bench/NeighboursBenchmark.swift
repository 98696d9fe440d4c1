import DeviceModel
import Foundation
import LocalDeployment
import ManagementAPI

/// `hv bench neighbours`: a child's control-path round trips (the probe guest's message and
/// event echoes through the root and the parent) alone, then beside a child that floods the
/// parent through the root (COM1 writes, or echo requests), as the ratio of the medians
/// (Docs/benchmarks.md; the isolation issue's target is at most 2×).
public enum NeighboursBenchmark {
    public struct Options: Sendable {
        /// Round trips of each kind the quiet child times.
        public var iterations: Int
        /// The neighbours to measure beside: "spin" (a busy processor, nothing asked of the
        /// parent), "com1", "echo".
        public var floods: [String]
        /// Seconds the flooder runs before the quiet child starts.
        public var warmup: Int

        public init(iterations: Int = 2000, floods: [String] = ["spin", "com1", "echo"], warmup: Int = 3) {
            self.iterations = iterations
            self.floods = floods
            self.warmup = warmup
        }
    }

    public struct Point: Codable, Sendable {
        /// The kind of round trip the quiet child timed.
        public var round_trip: String
        /// "none" for the idle figure, else the neighbour's flood.
        public var flood: String
        public var p50_us: Double
        public var p99_us: Double
        /// p50 ÷ the idle p50.
        public var ratio: Double
    }

    public struct Report: Codable, Sendable {
        public var points: [Point]
        public var date: String
        public var machine: String

        public var table: String {
            var lines = ["ROUND TRIP              NEIGHBOUR  P50 µs    P99 µs    ×IDLE"]
            for point in points {
                lines.append(point.round_trip.padding(toLength: 24, withPad: " ", startingAt: 0)
                             + point.flood.padding(toLength: 11, withPad: " ", startingAt: 0)
                             + String(format: "%-10.1f%-10.1f%.2f", point.p50_us, point.p99_us, point.ratio))
            }
            lines.append("\(machine); \(date).")
            return lines.joined(separator: "\n")
        }

        public var json: String {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        }
    }

    static let roundTrips = ["message-rtt-interrupt", "message-rtt-polled", "event-rtt"]

    public static func run(_ options: Options, executable: String, packageRoot: String, runtimeDirectory: String,
                           progress: @Sendable (String) -> Void) async throws -> Report {
        progress("starting the root scheduler and the parent partition")
        let deployment = try await LocalDeployment.start(executable: executable, runtimeDirectory: runtimeDirectory)
        defer { deployment.stop() }
        let built = try await LocalDeployment.resolveImage(
            PartitionConfiguration(name: "quiet", processors: 1, memoryMiB: 32,
                                   guest: .embedded(image: "Guest", arguments: "", imagePath: nil)),
            configurationPath: "\(packageRoot)/Partitions/alpha.json")
        guard case .embedded(_, _, let imagePath?) = built.guest else { throw DeploymentError.missingImage("Guest") }

        func create(_ name: String, _ arguments: String, devices: [DeviceConfiguration]) async throws {
            let configuration = PartitionConfiguration(name: name, processors: 1, memoryMiB: 32,
                                                       guest: .embedded(image: imagePath, arguments: arguments,
                                                                        imagePath: imagePath),
                                                       devices: devices)
            _ = try await deployment.client.request(.POST, "/v1/partitions", body: configuration, as: PartitionInfo.self)
            try await deployment.perform("start", on: name)
        }
        func probe(_ name: String) async throws -> [String: (Double, Double)] {
            try await create(name, "mode=probe iterations=\(options.iterations)", devices: [])
            _ = try await deployment.waitForConsole(name, containing: "probe: done", timeoutSeconds: 600)
            var figures: [String: (Double, Double)] = [:]
            for line in try await deployment.console(name, lines: 200) {
                for kind in roundTrips where line.contains("probe: \(kind)-ns p50=") {
                    figures[kind] = (Double(SoakBenchmark.number("p50=", line)) / 1000, Double(SoakBenchmark.number("p99=", line)) / 1000)
                }
            }
            try await deployment.delete(name)
            return figures
        }

        progress("measuring alone")
        let idle = try await probe("quiet")
        var points = roundTrips.compactMap { kind in
            idle[kind].map { Point(round_trip: kind, flood: "none", p50_us: $0.0, p99_us: $0.1, ratio: 1) }
        }
        for flood in options.floods {
            progress("measuring beside a child that floods \(flood)")
            try await create("flood-\(flood)", "mode=flood flood=\(flood)", devices: flood == "com1" ? ["com1"] : [])
            try await Task.sleep(for: .seconds(options.warmup))
            let flooded = try await probe("quiet-\(flood)")
            try await deployment.delete("flood-\(flood)")
            for kind in roundTrips {
                guard let figure = flooded[kind], let base = idle[kind]?.0, base > 0 else { continue }
                points.append(Point(round_trip: kind, flood: flood, p50_us: figure.0, p99_us: figure.1, ratio: figure.0 / base))
            }
        }
        return Report(points: points, date: ISO8601DateFormatter().string(from: Date()),
                      machine: ChannelBenchmark.machineDescription())
    }
}
