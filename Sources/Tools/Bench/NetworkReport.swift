import Foundation

/// What `hv bench network` measured: one point per direction and frame size, each with its
/// baseline from the same run, and the ping. Figures that have a goal carry it (`target`, and
/// `met`), so a script can check a run.
public struct NetworkReport: Codable, Sendable {
    public struct Point: Codable, Sendable {
        /// guest-to-host (through the internal switch's TAP), host-to-guest, guest-to-guest
        /// (across a private switch).
        public var direction: String
        public var size_bytes: Int
        public var frames_per_s: Double
        public var gbit_per_s: Double
        public var frames_sent: Int
        public var frames_received: Int
        /// The rate the sender offered frames at (its own count over its own time).
        public var offered_frames_per_s: Double?
        public var baseline: String
        public var baseline_frames_per_s: Double
        public var baseline_gbit_per_s: Double
        /// frames_per_s / baseline_frames_per_s.
        public var ratio: Double
        /// For the guest-to-guest 64-byte point: the host-only ring's 64-byte message rate
        /// (`hv bench channel`'s baseline), measured in this run.
        public var ring_baseline_messages_per_s: Double?
        /// The goal, if this figure has one: what is compared, the threshold, the value, whether met.
        public var target: String?
        public var target_value: Double?
        public var value: Double?
        public var met: Bool?

        init(direction: String, size_bytes: Int, frames_per_s: Double, frames_sent: Int, frames_received: Int,
             baseline: String, baseline_frames_per_s: Double) {
            self.direction = direction
            self.size_bytes = size_bytes
            self.frames_per_s = frames_per_s
            gbit_per_s = frames_per_s * Double(size_bytes) * 8 / 1e9
            self.frames_sent = frames_sent
            self.frames_received = frames_received
            self.baseline = baseline
            self.baseline_frames_per_s = baseline_frames_per_s
            baseline_gbit_per_s = baseline_frames_per_s * Double(size_bytes) * 8 / 1e9
            ratio = baseline_frames_per_s > 0 ? frames_per_s / baseline_frames_per_s : 0
        }

        mutating func setTarget(_ description: String, _ threshold: Double, value: Double) {
            target = description
            target_value = threshold
            self.value = value
            met = value >= threshold
        }
    }

    public struct Ping: Codable, Sendable {
        public var replies: Int
        public var sent: Int
        public var p50_us: Double
        public var p99_us: Double
        public var veth_p50_us: Double
        public var veth_p99_us: Double
        public var raw_chain_p50_us: Double
        public var target: String
        public var target_us: Double
        public var met: Bool
    }

    /// Where the frames of one direction that did not arrive were dropped, over all its sizes,
    /// counted during that direction only. A count is absent where its counter could not be read.
    public struct Losses: Codable, Sendable {
        public var direction: String
        public var frames_sent: Int
        public var frames_received: Int
        /// By the host TAP before the parent read them (its tx_dropped); host-to-guest only.
        public var host_tap: Int?
        /// At the receiving child's switch port: its queue was full.
        public var switch_port: Int?
        /// By the receiving child's NIC.
        public var nic: Int?
        /// Lost where none of these counters saw them: sent − received − the drops above (known
        /// only when they all are; negative if the counters saw frames other than the bench's).
        public var elsewhere: Int?

        init(direction: String, frames_sent: Int, frames_received: Int, drops: NetworkBenchmark.DropCounts) {
            self.direction = direction
            self.frames_sent = frames_sent
            self.frames_received = frames_received
            host_tap = drops.hostTAP
            switch_port = drops.switchPort
            nic = drops.nic
            if let switchPort = drops.switchPort, let nic = drops.nic, direction != "host-to-guest" || drops.hostTAP != nil {
                elsewhere = frames_sent - frames_received - (drops.hostTAP ?? 0) - switchPort - nic
            }
        }

        /// One line for the table's notes.
        var summary: String {
            func count(_ value: Int?) -> String { value.map(String.init) ?? "unknown" }
            var parts: [String] = []
            if direction == "host-to-guest" { parts.append("\(count(host_tap)) by the host TAP (the parent's pump read it too slowly)") }
            parts.append("\(count(switch_port)) at the child's switch port (queue full)")
            parts.append("\(count(nic)) by the child's NIC")
            if let elsewhere, elsewhere < 0 {
                // The counters are the TAP's, the port's and the NIC's, not the bench's alone:
                // the host's own frames to the TAP, or a guest's ARP, are counted there too, so
                // bench frames lost elsewhere may hide behind them.
                parts.append("elsewhere unknown (the counters saw \(-elsewhere) more drops than frames went missing: frames not the bench's)")
            } else {
                parts.append("\(count(elsewhere)) elsewhere")
            }
            return "\(NetworkReport.names[direction] ?? direction), all sizes: \(frames_sent - frames_received) of \(frames_sent) "
                + "frames did not arrive: " + parts.joined(separator: ", ") + "."
        }
    }

    public var points: [Point]
    public var ping: Ping
    public var losses: [Losses]
    public var mtu: Int
    public var frames: Int
    public var date: String
    public var machine: String
    /// /proc/loadavg when the run started (other work on the machine skews the figures).
    public var load_average: String
    /// Percent of the host's processor time the hypervisor beneath it took ("steal",
    /// /proc/stat) while the host-only baselines ran, and while the guests ran; absent where
    /// /proc/stat could not be read.
    public var steal_percent_baselines: Double?
    public var steal_percent_guests: Double?

    static let names = ["guest-to-host": "guest → host (TAP)", "host-to-guest": "host → guest (TAP)",
                        "guest-to-guest": "guest → guest (private switch)"]

    /// A plain-text table and the closing note with the targets.
    public var table: String {
        func column(_ text: String, _ width: Int) -> String {
            text.count < width ? text.padding(toLength: width, withPad: " ", startingAt: 0) : text + " "
        }
        var lines = [column("DIRECTION", 32) + column("SIZE", 7) + column("FRAMES/S", 12) + column("GBIT/S", 9)
                     + column("RECEIVED", 18) + column("OFFERED/S", 11) + column("BASELINE", 34) + column("BASE FRAMES/S", 15)
                     + column("BASE GBIT/S", 12) + "RATIO"]
        for point in points {
            lines.append(column(Self.names[point.direction] ?? point.direction, 32) + column("\(point.size_bytes)", 7)
                         + column(String(format: "%.0f", point.frames_per_s), 12) + column(String(format: "%.2f", point.gbit_per_s), 9)
                         + column("\(point.frames_received)/\(point.frames_sent)", 18)
                         + column(point.offered_frames_per_s.map { String(format: "%.0f", $0) } ?? "-", 11) + column(point.baseline, 34)
                         + column(String(format: "%.0f", point.baseline_frames_per_s), 15)
                         + column(String(format: "%.2f", point.baseline_gbit_per_s), 12) + String(format: "%.2f", point.ratio))
        }
        lines.append("")
        lines.append(String(format: "Ping guest → host: %d/%d replies, p50 %.1f µs, p99 %.1f µs; host veth ping p50 %.1f µs, p99 %.1f µs; raw signalling chain p50 %.1f µs.",
                            ping.replies, ping.sent, ping.p50_us, ping.p99_us, ping.veth_p50_us, ping.veth_p99_us,
                            ping.raw_chain_p50_us))
        for loss in losses { lines.append(loss.summary) }
        lines.append("")
        lines.append("Targets:")
        for point in points where point.target != nil {
            lines.append("  \(Self.names[point.direction] ?? point.direction) \(point.size_bytes) B: \(point.target ?? "") "
                         + String(format: "%.2f — %.2f, ", point.target_value ?? 0, point.value ?? 0)
                         + (point.met == true ? "met" : "NOT met"))
        }
        lines.append(String(format: "  ping p50 ≤ 1.5 × (veth p50 + raw chain p50) = %.1f µs — %.1f µs, ", ping.target_us, ping.p50_us)
                     + (ping.met ? "met" : "NOT met"))
        lines.append("")
        lines.append("MTU \(mtu), \(frames) frames per point; \(machine); load average \(load_average) at the start; host steal "
                     + "\(ProcessorTime.describe(steal_percent_baselines)) while the baselines ran, "
                     + "\(ProcessorTime.describe(steal_percent_guests)) while the guests ran; "
                     + "\(date).")
        return lines.joined(separator: "\n")
    }

    /// The report as pretty-printed JSON.
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// One bar chart per direction: Gbit/s of the NIC and of its baseline per frame size, each
    /// NIC bar labelled with its frame rate and ratio; the ping below.
    public var svg: String {
        let directions = ["guest-to-host", "host-to-guest", "guest-to-guest"]
        let width = 960.0, height = 420.0, margin = 50.0, gap = 30.0
        let panel = (width - 2 * margin - 2 * gap) / 3
        let top = 60.0, bottom = height - 90
        let maximum = max(0.1, points.map { max($0.gbit_per_s, $0.baseline_gbit_per_s) }.max() ?? 1) * 1.15
        func y(_ value: Double) -> Double { bottom - value / maximum * (bottom - top) }
        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(margin)" y="22" font-size="14">hv bench network — Gbit/s by frame size, NIC (blue) against its host-only baseline (grey), \(date)</text>

        """
        for (index, direction) in directions.enumerated() {
            let left = margin + Double(index) * (panel + gap)
            let series = points.filter { $0.direction == direction }
            out += "<text x=\"\(left)\" y=\"\(top - 12)\" font-size=\"12\">\(Self.names[direction] ?? direction)</text>\n"
            out += "<line x1=\"\(left)\" y1=\"\(bottom)\" x2=\"\(left + panel)\" y2=\"\(bottom)\" stroke=\"black\"/>\n"
            out += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(bottom)\" stroke=\"black\"/>\n"
            for step in 0...4 {
                let value = maximum / 4 * Double(step)
                out += "<text x=\"\(left - 4)\" y=\"\(y(value) + 4)\" text-anchor=\"end\">\(String(format: "%.1f", value))</text>\n"
            }
            let slot = panel / Double(max(series.count, 1))
            for (position, point) in series.enumerated() {
                let x = left + Double(position) * slot + slot * 0.15
                let bar = slot * 0.32
                out += "<rect x=\"\(x)\" y=\"\(y(point.gbit_per_s))\" width=\"\(bar)\" height=\"\(bottom - y(point.gbit_per_s))\" fill=\"#1f77b4\"/>\n"
                out += "<rect x=\"\(x + bar)\" y=\"\(y(point.baseline_gbit_per_s))\" width=\"\(bar)\" height=\"\(bottom - y(point.baseline_gbit_per_s))\" fill=\"#aaaaaa\"/>\n"
                out += "<text x=\"\(x + bar)\" y=\"\(bottom + 14)\" text-anchor=\"middle\">\(point.size_bytes) B</text>\n"
                out += "<text x=\"\(x + bar)\" y=\"\(bottom + 28)\" text-anchor=\"middle\">\(String(format: "%.0fk fr/s", point.frames_per_s / 1000))</text>\n"
                out += "<text x=\"\(x + bar)\" y=\"\(bottom + 42)\" text-anchor=\"middle\">\(String(format: "%.2f×", point.ratio))</text>\n"
            }
        }
        out += "<text x=\"\(margin)\" y=\"\(height - 12)\">"
        out += String(format: "ping guest → host p50 %.1f µs (p99 %.1f); host veth p50 %.1f µs; raw signalling chain %.1f µs; target p50 ≤ %.1f µs: ",
                      ping.p50_us, ping.p99_us, ping.veth_p50_us, ping.raw_chain_p50_us, ping.target_us)
            + (ping.met ? "met" : "not met")
        out += "</text>\n</svg>\n"
        return out
    }
}
