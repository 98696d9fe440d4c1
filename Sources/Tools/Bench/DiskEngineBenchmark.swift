import DiskBackend
import Foundation
import GuestMemory
import LinuxSupport

/// `hv bench disk-engines`: random 4 KiB read/write IOPS of the disk back end's engines
/// (io_uring, single-issuer io_uring, thread pools) on an image file, driven as a channel worker
/// drives its queue, next to fio on the same file and pattern — how the default engine was chosen
/// (Docs/storage.md, "Engines").
public enum DiskEngineBenchmark {
    public struct Row: Codable, Sendable {
        public var engine: String
        public var pattern: String
        public var queue_depth: Int
        public var direct: Bool
        public var iops: Double
    }

    /// The engines compared, by name.
    public static let engines: [(String, DiskEngineKind)] = [
        ("io_uring", .ioURing), ("io_uring-single", .ioURingSingleIssuer), ("threads:4", .threadPool(threads: 4)),
        ("threads:16", .threadPool(threads: 16)),
    ]

    /// Measures each engine (and fio, when `fio` is given) at each pattern and queue depth.
    public static func run(file: String, bytes: UInt64, seconds: Double, patterns: [String], queueDepths: [Int], direct: Bool,
                           engines chosen: [String], fio: String?, progress: (String) -> Void) throws -> [Row] {
        try StorageBenchmark.prepare(file, bytes: bytes, progress: progress)
        var rows: [Row] = []
        for pattern in patterns {
            guard let kind = DiskBenchmark.Pattern(rawValue: pattern) else { throw Fio.FioError.failed("unknown pattern \(pattern)") }
            for depth in queueDepths {
                for (name, engine) in engines where chosen.contains(name) {
                    progress("\(name) \(pattern) QD\(depth)\(direct ? " direct" : "")")
                    let result = try DiskBenchmark.run(DiskBenchmark.Configuration(
                        path: file, pattern: kind, blockSize: 4096, queueDepth: depth, seconds: seconds, engine: engine, direct: direct))
                    rows.append(Row(engine: name, pattern: pattern, queue_depth: depth, direct: direct, iops: result.iops))
                }
                if let fio {
                    progress("fio \(pattern) QD\(depth)\(direct ? " direct" : "")")
                    let result = try Fio.run(fio, file: file, pattern: pattern, blockSize: 4096, queueDepth: depth, direct: direct,
                                             seconds: seconds)
                    rows.append(Row(engine: "fio io_uring", pattern: pattern, queue_depth: depth, direct: direct, iops: result.iops))
                }
                StorageBenchmark.syncFile(file)
            }
        }
        return rows
    }

    /// The rows as a table.
    public static func table(_ rows: [Row]) -> String {
        var lines = ["ENGINE            PATTERN     QD    DIRECT  IOPS"]
        for row in rows {
            func column(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count + 1), withPad: " ", startingAt: 0) }
            lines.append(column(row.engine, 18) + column(row.pattern, 12) + column("\(row.queue_depth)", 6)
                         + column(row.direct ? "yes" : "no", 8) + String(format: "%.0f", row.iops))
        }
        return lines.joined(separator: "\n")
    }
}
