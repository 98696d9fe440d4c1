/// What the Embedded Swift probe guest reported on its debug port (see Partitions/Guest).
public struct ProbeReport: Sendable, Equatable {
    /// Median and 99th percentile in nanoseconds.
    public struct Latency: Sendable, Equatable {
        public var p50: UInt64
        public var p99: UInt64
        public var samples: Int
    }

    public var pioExit: Latency?
    public var messageInterrupt: Latency?
    public var messagePolled: Latency?
    public var event: Latency?
    /// |TIME_REF_COUNT − reference TSC page| in 100 ns units.
    public var referenceSkew: UInt64?
    /// Statuses of the hostile hypercalls, by name.
    public var hostileStatuses: [String: Int] = [:]
    public var processorIndices: [Int] = []

    /// Parses the probe's lines (with or without a "[vpN] " prefix).
    public init(lines: [String]) {
        for line in lines {
            guard let range = line.range(of: "probe: ") else { continue }
            let text = line[range.upperBound...]
            let fields = Self.fields(String(text))
            if text.hasPrefix("pio-exit-ns") { pioExit = Self.latency(fields) }
            if text.hasPrefix("message-rtt-interrupt-ns") { messageInterrupt = Self.latency(fields) }
            if text.hasPrefix("message-rtt-polled-ns") { messagePolled = Self.latency(fields) }
            if text.hasPrefix("event-rtt-ns") { event = Self.latency(fields) }
            if text.hasPrefix("reference-tsc") { referenceSkew = fields["skew-100ns"].flatMap { UInt64($0) } }
            if text.hasPrefix("hostile-hypercalls") {
                hostileStatuses = fields.compactMapValues { Int($0) }
            }
            if text.hasPrefix("VP_INDEX read by each processor:") {
                processorIndices = text.split(separator: ":").last?.split(separator: " ").compactMap { Int($0) } ?? []
            }
        }
    }

    static func fields(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for word in text.split(separator: " ") {
            let parts = word.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { result[String(parts[0])] = String(parts[1]) }
        }
        return result
    }

    static func latency(_ fields: [String: String]) -> Latency? {
        guard let p50 = fields["p50"].flatMap({ UInt64($0) }), let p99 = fields["p99"].flatMap({ UInt64($0) }),
              let count = fields["n"].flatMap({ Int($0) }) else { return nil }
        return Latency(p50: p50, p99: p99, samples: count)
    }
}
