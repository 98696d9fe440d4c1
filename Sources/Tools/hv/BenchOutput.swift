import Foundation

/// Where every `hv bench` subcommand puts its report: `NAME.json` (and `NAME.svg` where there
/// is a chart) in `--output-dir`, by default `.build/bench`, and the table (or, with `--json`,
/// the JSON) on standard output.
enum BenchOutput {
    static func publish(json report: String, svg: String? = nil, table: String, name: String, printJSON: Bool,
                        directory: String?, packageRoot: String) throws {
        let output = directory ?? "\(packageRoot)/.build/bench"
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        var written = ["\(output)/\(name).json"]
        try report.write(toFile: written[0], atomically: true, encoding: .utf8)
        if let svg {
            written.append("\(output)/\(name).svg")
            try svg.write(toFile: written[1], atomically: true, encoding: .utf8)
        }
        print(printJSON ? report : table)
        if !printJSON { print("Wrote \(written.joined(separator: " and "))") }
    }

    /// Progress lines on standard error, silent when the JSON report goes to standard output.
    static func progress(quiet: Bool) -> @Sendable (String) -> Void {
        { message in
            if !quiet { FileHandle.standardError.write(Data("hv bench: \(message)\n".utf8)) }
        }
    }
}
