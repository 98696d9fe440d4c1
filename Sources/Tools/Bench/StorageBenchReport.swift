import Foundation

extension StorageBenchmark.Result {
    /// The pattern this result measured.
    var point: StorageBenchmark.Point { StorageBenchmark.Point(rw: rw, blockSize: block_size, queueDepth: queue_depth) }
}

extension StorageBenchmark.Report {
    /// A plain-text table: per point the three paths' throughput and latencies, and the ratios.
    public var table: String {
        func column(_ text: String, _ width: Int) -> String {
            text.count < width ? text.padding(toLength: width, withPad: " ", startingAt: 0) : text + " "
        }
        func rate(_ m: StorageBenchmark.Measurement?, _ sequential: Bool) -> String {
            guard let m else { return "-" }
            // The emulated disk moves well under 1 MB/s at 1 MiB; "0" would hide that it moved.
            let (value, unit) = sequential ? (m.bytes_per_s / 1e6, "MB/s") : (m.iops, "IOPS")
            return String(format: value < 10 ? "%.2f" : "%.0f", value) + " " + unit
        }
        func latency(_ m: StorageBenchmark.Measurement?) -> String {
            guard let m else { return "-" }
            return String(format: "%.0f/%.0f", m.p50_us, m.p99_us)
        }
        func ratio(_ value: Double?) -> String { value.map { String(format: "%.2f", $0) } ?? "-" }
        var lines = [column("POINT", 20) + column("DIRECT", 7) + column("SYNTHETIC", 13) + column("p50/p99 µs", 13)
                     + column("EMULATED", 12) + column("p50/p99 µs", 16) + column("FIO", 13) + column("p50/p99 µs", 13)
                     + column("SYN/FIO", 8) + column("SYN/EMU", 9) + "GOALS"]
        for result in results {
            let sequential = result.point.isSequential
            let goals = result.goals.map { "\($0.met ? "met" : "MISSED") \(String(format: "≥%g", $0.target))" }.joined(separator: ", ")
            lines.append(column(result.point.label, 20) + column(result.direct ? "yes" : "no", 7)
                         + column(rate(result.synthetic, sequential), 13) + column(latency(result.synthetic), 13)
                         + column(rate(result.emulated, sequential), 12) + column(latency(result.emulated), 16)
                         + column(rate(result.fio, sequential), 13) + column(latency(result.fio), 13)
                         + column(ratio(result.synthetic_to_fio), 8) + column(ratio(result.synthetic_to_emulated), 9) + goals)
        }
        let beside = results.compactMap { result -> String? in
            guard let busy = result.fio_beside_busy_core else { return nil }
            return "\(result.point.label) \(rate(busy, result.point.isSequential)) (synthetic "
                + (result.synthetic_to_fio_beside_busy_core.map { String(format: "%.2f", $0) } ?? "-") + " of it)"
        }
        if !beside.isEmpty {
            lines.append("")
            lines.append("fio beside a busy core (a host thread spinning, as a polling guest keeps one; O_DIRECT, a reference, not a goal): "
                         + beside.joined(separator: "; ") + ".")
        }
        lines.append("")
        lines.append("\(goals_met) of \(goals) goals met. File \(file) (\(file_bytes >> 20) MiB), \(String(format: "%g", seconds_per_point)) s per point and path"
                     + (rounds > 1 ? " in each of \(rounds) rounds taking turns with fio (synthetic and fio: each its median round; emulated: the first), " : ", ")
                     + "\(channels) channel(s), \(engine) back end, \(fio_version); load average \(String(format: "%.1f", load_average_before)) "
                     + "before, \(String(format: "%.1f", load_average_after)) after; host steal \(ProcessorTime.describe(steal_percent_fio)) "
                     + "while fio ran, \(ProcessorTime.describe(steal_percent_guest)) while the guest ran; \(machine); \(date).")
        lines.append("Ratios are of throughput (bytes/s): SYN/FIO = synthetic ÷ fio on the host, SYN/EMU = synthetic ÷ emulated IDE.")
        return lines.joined(separator: "\n")
    }

    /// The report as pretty-printed JSON; every figure with a goal carries `target` and `met`.
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// Bars per point (log scale, MB/s): fio, synthetic and emulated, each synthetic bar labelled
    /// with its ratios to fio and to the emulated disk.
    public var svg: String {
        let barWidth = 16.0, groupGap = 28.0, left = 70.0, top = 50.0, plotHeight = 300.0
        let width = left + Double(results.count) * (3 * barWidth + groupGap) + 40
        let height = top + plotHeight + 110
        let values = results.flatMap { [$0.fio, $0.synthetic, $0.emulated].compactMap { $0?.bytes_per_s } }.filter { $0 > 0 }
        let low = log10(max(1e3, (values.min() ?? 1e6) / 2)), high = log10(max(1e4, (values.max() ?? 1e9) * 2))
        func y(_ bytes: Double) -> Double {
            let value = log10(max(bytes, pow(10, low)))
            return top + plotHeight - (value - low) / (high - low) * plotHeight
        }
        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(left)" y="20" font-size="14">hv bench storage — \(file_bytes >> 20) MiB file, \(date)</text>
        <text x="\(left)" y="36">throughput, MB/s (log scale): fio on the host, synthetic (storvsc ↔ VSP), emulated IDE</text>

        """
        var decade = ceil(low)
        while decade <= high {
            let value = pow(10, decade)
            out += "<line x1=\"\(left)\" y1=\"\(y(value))\" x2=\"\(width - 20)\" y2=\"\(y(value))\" stroke=\"#ddd\"/>"
            out += "<text x=\"\(left - 6)\" y=\"\(y(value) + 4)\" text-anchor=\"end\">\(String(format: "%g", value / 1e6))</text>\n"
            decade += 1
        }
        for (index, result) in results.enumerated() {
            let x0 = left + 10 + Double(index) * (3 * barWidth + groupGap)
            for (offset, (measurement, color)) in [(result.fio, "#7f7f7f"), (result.synthetic, "#1f77b4"), (result.emulated, "#d62728")].enumerated() {
                guard let bytes = measurement?.bytes_per_s, bytes > 0 else { continue }
                let x = x0 + Double(offset) * barWidth
                out += "<rect x=\"\(x)\" y=\"\(y(bytes))\" width=\"\(barWidth - 2)\" height=\"\(top + plotHeight - y(bytes))\" fill=\"\(color)\"/>\n"
            }
            if let synthetic = result.synthetic?.bytes_per_s, synthetic > 0 {
                let label = [result.synthetic_to_fio.map { String(format: "%.2f×fio", $0) },
                             result.synthetic_to_emulated.map { String(format: "%.0f×emu", $0) }].compactMap { $0 }
                for (line, text) in label.enumerated() {
                    out += "<text x=\"\(x0 + barWidth)\" y=\"\(y(synthetic) - 6 - Double(line) * 11)\" font-size=\"9\" text-anchor=\"middle\">\(text)</text>\n"
                }
            }
            let size = result.block_size >= 1 << 20 ? "\(result.block_size >> 20)M" : "\(result.block_size >> 10)K"
            out += "<text x=\"\(x0 + 1.5 * barWidth)\" y=\"\(top + plotHeight + 14)\" text-anchor=\"middle\">\(result.rw)</text>"
            out += "<text x=\"\(x0 + 1.5 * barWidth)\" y=\"\(top + plotHeight + 26)\" text-anchor=\"middle\">\(size) QD\(result.queue_depth)</text>"
            out += "<text x=\"\(x0 + 1.5 * barWidth)\" y=\"\(top + plotHeight + 38)\" text-anchor=\"middle\">\(result.direct ? "direct" : "buffered")</text>\n"
        }
        for (index, (name, color)) in [("fio (host)", "#7f7f7f"), ("synthetic", "#1f77b4"), ("emulated IDE", "#d62728")].enumerated() {
            let x = left + Double(index) * 130
            out += "<rect x=\"\(x)\" y=\"\(height - 30)\" width=\"10\" height=\"10\" fill=\"\(color)\"/>"
            out += "<text x=\"\(x + 15)\" y=\"\(height - 21)\">\(name)</text>\n"
        }
        out += "</svg>\n"
        return out
    }
}
