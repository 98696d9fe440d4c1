import Foundation
import LinuxSupport

/// fio on the host, the baseline `hv bench storage` measures every point against: the same
/// file, pattern, block size, queue depth and direct flag, on io_uring (the engine class the
/// parent's disk queues use), with the page cache left as it is (`--invalidate=0`).
public enum Fio {
    /// What one fio job measured.
    public struct Result: Sendable {
        public var bytesPerSecond: Double
        public var iops: Double
        public var p50Microseconds: Double
        public var p99Microseconds: Double
        public var operations: Int
        public var errors: Int
    }

    public enum FioError: Error, CustomStringConvertible {
        case missing(String)
        case failed(String)

        public var description: String {
            switch self {
            case .missing(let reason), .failed(let reason): reason
            }
        }
    }

    /// fio's path; installs Debian's `fio` package first when it is missing and this process is
    /// root (`apt-get install fio`), as the project's set-up does for the tools it needs.
    public static func locate(progress: (String) -> Void) throws -> String {
        if let found = HostTools.find("fio") { return found }
        try HostTools.install(package: "fio", progress: progress)
        guard let found = HostTools.find("fio") else { throw FioError.missing("fio is not on PATH after installing it") }
        return found
    }

    /// `fio --version`, e.g. "fio-3.33".
    public static func version(_ fio: String) -> String {
        (try? HostTools.run(fio, ["--version"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? "fio"
    }

    /// Runs one job for `seconds` and reads its JSON report.
    public static func run(_ fio: String, file: String, pattern: String, blockSize: Int, queueDepth: Int, direct: Bool,
                           seconds: Double) throws -> Result {
        let arguments = [
            "--name=hv-bench", "--filename=\(file)", "--rw=\(pattern)", "--bs=\(blockSize)", "--iodepth=\(queueDepth)",
            "--ioengine=io_uring", "--direct=\(direct ? 1 : 0)", "--time_based=1", "--runtime=\(max(1, Int(seconds.rounded())))",
            "--numjobs=1", "--invalidate=0", "--randrepeat=0", "--norandommap=1", "--lat_percentiles=1",
            "--output-format=json",
        ]
        let output = try HostTools.run(fio, arguments)
        // fio may print warnings before the JSON document.
        guard let start = output.firstIndex(of: "{"),
              let object = try JSONSerialization.jsonObject(with: Data(output[start...].utf8)) as? [String: Any],
              let job = (object["jobs"] as? [[String: Any]])?.first
        else { throw FioError.failed("fio printed no JSON report: \(output.prefix(400))") }
        let side = job[pattern.contains("write") ? "write" : "read"] as? [String: Any] ?? [:]
        let latency = side["lat_ns"] as? [String: Any] ?? [:]
        let percentiles = latency["percentile"] as? [String: Any] ?? [:]
        func number(_ value: Any?) -> Double { (value as? NSNumber)?.doubleValue ?? 0 }
        return Result(bytesPerSecond: number(side["bw_bytes"]), iops: number(side["iops"]),
                      p50Microseconds: number(percentiles["50.000000"]) / 1000, p99Microseconds: number(percentiles["99.000000"]) / 1000,
                      operations: Int(number(side["total_ios"])), errors: Int(number(job["error"])))
    }
}

/// Tools from the host's Debian packages.
public enum HostTools {
    /// The executable `name` on PATH (or in /usr/sbin, /sbin).
    public static func find(_ name: String) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// `apt-get install -y --no-install-recommends package` (updating the package lists once if
    /// the first try fails); only as root.
    public static func install(package: String, progress: (String) -> Void) throws {
        guard geteuid() == 0 else {
            throw Fio.FioError.missing("\(package) is not installed: run `apt-get install \(package)` as root")
        }
        guard let aptGet = find("apt-get") else { throw Fio.FioError.missing("\(package) is missing and there is no apt-get") }
        progress("installing \(package) (apt-get install \(package))")
        do {
            _ = try run(aptGet, ["install", "-y", "-qq", "--no-install-recommends", package], environment: ["DEBIAN_FRONTEND": "noninteractive"])
        } catch {
            _ = try run(aptGet, ["update", "-qq"])
            _ = try run(aptGet, ["install", "-y", "-qq", "--no-install-recommends", package], environment: ["DEBIAN_FRONTEND": "noninteractive"])
        }
    }

    /// Runs a program to completion and returns its standard output; throws with its error
    /// output if it fails.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> String {
        var variables: [String]?
        if !environment.isEmpty {
            let kept = ProcessEnvironment.current.filter { entry in
                !environment.keys.contains { entry.hasPrefix("\($0)=") }
            }
            variables = kept + environment.map { "\($0.key)=\($0.value)" }
        }
        let result = try HostCommand.run(executable, arguments, environment: variables)
        guard result.status == 0 else {
            throw Fio.FioError.failed("\(executable) \(arguments.joined(separator: " ")) exited with status \(result.status): "
                                      + String(result.errors.prefix(600)))
        }
        return result.output
    }

    /// The 1-minute load average.
    public static func loadAverage() -> Double {
        let text = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? ""
        return Double(text.split(separator: " ").first ?? "") ?? 0
    }
}
