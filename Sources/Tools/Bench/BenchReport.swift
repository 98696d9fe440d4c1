import Foundation

extension ChannelBenchmark.Report {
    /// A plain-text table.
    public var table: String {
        var lines = ["MODE        SIZE      MSG/S         MB/S      P50 µs    P99 µs    BASELINE                   BASE MSG/S    BASE P50 µs  RATIO  INTACT"]
        for point in points {
            // Padded to `width`, and never run into the next column.
            func column(_ text: String, _ width: Int) -> String {
                text.count < width ? text.padding(toLength: width, withPad: " ", startingAt: 0) : text + " "
            }
            let p50 = point.p50_us.map { String(format: "%.1f", $0) } ?? "-"
            let p99 = point.p99_us.map { String(format: "%.1f", $0) } ?? "-"
            let baseP50 = point.baseline_p50_us.map { String(format: "%.1f", $0) } ?? "-"
            lines.append(column(point.mode, 12) + column("\(point.size_bytes)", 10)
                         + column(String(format: "%.0f", point.messages_per_s), 14)
                         + column(String(format: "%.1f", point.bytes_per_s / 1e6), 10)
                         + column(p50, 10) + column(p99, 10) + column(point.baseline, 27)
                         + column(String(format: "%.0f", point.baseline_messages_per_s), 14)
                         + column(baseP50, 13) + column(String(format: "%.2f", point.ratio), 7)
                         + (point.intact ? "yes" : "NO"))
        }
        let startup = startup_ms.map { String(format: "%.1f", $0) }.joined(separator: ", ")
        lines.append("")
        lines.append("Partition creation to channels open: \(startup) ms.  \(partitions) partition(s); \(machine); \(date).")
        lines.append("Throughput ratio = VMBus / host-only ring (higher is better); round-trip ratio = VMBus p50 / baseline p50 (lower is better).")
        return lines.joined(separator: "\n")
    }

    /// The report as pretty-printed JSON.
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// Two charts against message size (log scale): throughput (MB/s) of VMBus and the
    /// host-only ring, and median round-trip latency (µs) of both round-trip modes and their
    /// baselines, each VMBus point labelled with its ratio to the baseline.
    public var svg: String {
        let width = 920.0, height = 380.0, margin = 60.0, gap = 40.0
        let panel = (width - 2 * margin - gap) / 2
        let sizes = Array(Set(points.map(\.size_bytes))).sorted()
        func x(_ size: Int, _ left: Double) -> Double {
            guard let first = sizes.first, let last = sizes.last, last > first else { return left + panel / 2 }
            return left + (log2(Double(size)) - log2(Double(first))) / (log2(Double(last)) - log2(Double(first))) * panel
        }
        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(margin)" y="20" font-size="14">hv bench channel — \(partitions) partition(s), \(date)</text>

        """
        func chart(left: Double, title: String, unit: String, series: [(String, String, [(Int, Double)], [Double?])]) {
            let maximum = max(1, series.flatMap { $0.2.map(\.1) }.max() ?? 1) * 1.15
            let top = 45.0, bottom = height - margin
            func y(_ value: Double) -> Double { bottom - value / maximum * (bottom - top) }
            out += "<text x=\"\(left)\" y=\"38\" font-size=\"12\">\(title)</text>\n"
            out += "<line x1=\"\(left)\" y1=\"\(bottom)\" x2=\"\(left + panel)\" y2=\"\(bottom)\" stroke=\"black\"/>\n"
            out += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(bottom)\" stroke=\"black\"/>\n"
            for step in 0...4 {
                let value = maximum / 4 * Double(step)
                out += "<text x=\"\(left - 5)\" y=\"\(y(value) + 4)\" text-anchor=\"end\">\(String(format: "%.0f", value))</text>\n"
            }
            out += "<text x=\"\(left - 45)\" y=\"\(top - 8)\">\(unit)</text>\n"
            for size in sizes {
                out += "<text x=\"\(x(size, left))\" y=\"\(bottom + 15)\" text-anchor=\"middle\">\(size)</text>\n"
            }
            out += "<text x=\"\(left + panel / 2)\" y=\"\(bottom + 32)\" text-anchor=\"middle\">message size (bytes)</text>\n"
            for (index, (name, color, values, ratios)) in series.enumerated() {
                let path = values.map { "\(x($0.0, left)),\(y($0.1))" }.joined(separator: " ")
                let dash = name.contains("baseline") || name.contains("raw") || name.contains("host") ? " stroke-dasharray=\"5,3\"" : ""
                out += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dash)/>\n"
                for (pointIndex, value) in values.enumerated() {
                    out += "<circle cx=\"\(x(value.0, left))\" cy=\"\(y(value.1))\" r=\"3\" fill=\"\(color)\"/>\n"
                    if pointIndex < ratios.count, let ratio = ratios[pointIndex] {
                        out += "<text x=\"\(x(value.0, left) + 4)\" y=\"\(y(value.1) - 6)\" fill=\"\(color)\">\(String(format: "%.2f×", ratio))</text>\n"
                    }
                }
                out += "<rect x=\"\(left + 10)\" y=\"\(top + 6 + Double(index) * 16)\" width=\"10\" height=\"10\" fill=\"\(color)\"/>"
                out += "<text x=\"\(left + 25)\" y=\"\(top + 15 + Double(index) * 16)\">\(name)</text>\n"
            }
        }
        func series(_ mode: String, _ value: (ChannelBenchmark.Point) -> Double?) -> [(Int, Double)] {
            points.filter { $0.mode == mode }.sorted { $0.size_bytes < $1.size_bytes }.compactMap { point in value(point).map { (point.size_bytes, $0) } }
        }
        func ratios(_ mode: String) -> [Double?] {
            points.filter { $0.mode == mode }.sorted { $0.size_bytes < $1.size_bytes }.map { $0.ratio }
        }
        chart(left: margin, title: "Throughput", unit: "MB/s", series: [
            ("VSC→VSP (ratio to baseline)", "#1f77b4", series("throughput") { $0.bytes_per_s / 1e6 }, ratios("throughput")),
            ("VSP→VSC", "#2ca02c", series("source") { $0.bytes_per_s / 1e6 }, ratios("source")),
            ("host-only ring baseline", "#7f7f7f", series("throughput") { $0.baseline_bytes_per_s / 1e6 }, []),
        ])
        chart(left: margin + panel + gap, title: "Round trip, median", unit: "µs", series: [
            ("signalled (ratio to raw chain)", "#d62728", series("signalled") { $0.p50_us }, ratios("signalled")),
            ("raw signalling chain", "#ff9896", series("signalled") { $0.baseline_p50_us }, []),
            ("polled", "#9467bd", series("polled") { $0.p50_us }, ratios("polled")),
            ("host-only ping-pong", "#c5b0d5", series("polled") { $0.baseline_p50_us }, []),
        ])
        out += "</svg>\n"
        return out
    }
}
