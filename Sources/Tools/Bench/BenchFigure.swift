import Foundation

/// One measured figure of a benchmark and, when it has a goal, the goal and whether this run
/// met it, so scripts can check a run from its JSON.
public struct BenchFigure: Codable, Sendable, Equatable {
    public var name: String
    public var value: Double
    public var unit: String
    /// The goal as a sentence ("25 % ± 10 %", "≤ 50 ms"); nil for a figure shown for context.
    public var target: String?
    /// The goal's bounds, inclusive (nil where the goal has no such side).
    public var low: Double?
    public var high: Double?
    /// Whether `value` lies within the bounds; nil when there is no goal.
    public var met: Bool?

    /// A figure without a goal.
    public init(_ name: String, _ value: Double, unit: String) {
        self.name = name
        self.value = value
        self.unit = unit
    }

    /// A figure with a goal: `low...high` (either may be nil), described by `target`.
    public init(_ name: String, _ value: Double, unit: String, target: String, low: Double? = nil, high: Double? = nil) {
        self.init(name, value, unit: unit)
        self.target = target
        self.low = low
        self.high = high
        met = value.isFinite && (low.map { value >= $0 } ?? true) && (high.map { value <= $0 } ?? true)
    }

    /// The value as text, in its unit.
    public var formattedValue: String {
        switch unit {
        case "%": String(format: "%.1f %%", value)
        case "ms": String(format: "%.1f ms", value)
        case "µs": String(format: "%.1f µs", value)
        case "MiB": String(format: "%.2f MiB", value)
        case "×": String(format: "%.2f×", value)
        default: value == value.rounded() && abs(value) < 1e15 ? "\(Int(value)) \(unit)" : String(format: "%.3f \(unit)", value)
        }
    }
}

/// A group of figures from one experiment.
public struct BenchExperiment: Codable, Sendable, Equatable {
    public var name: String
    /// What was run, in one or two sentences.
    public var setup: String
    public var figures: [BenchFigure]

    public init(name: String, setup: String, figures: [BenchFigure]) {
        self.name = name
        self.setup = setup
        self.figures = figures
    }
}

/// What else the machine was doing around a run.
public struct HostConditions: Codable, Sendable, Equatable {
    public var machine: String
    public var date: String
    /// /proc/loadavg's 1-minute figure before and after the run.
    public var loadBefore: Double
    public var loadAfter: Double

    public static func now(machine: String) -> HostConditions {
        HostConditions(machine: machine, date: ISO8601DateFormatter().string(from: Date()), loadBefore: loadAverage(),
                       loadAfter: loadAverage())
    }

    /// The 1-minute load average.
    public static func loadAverage() -> Double {
        let text = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? ""
        return text.split(separator: " ").first.flatMap { Double($0) } ?? 0
    }
}

enum BenchText {
    /// Figures as table rows: experiment, figure, value, target, met.
    static func table(_ experiments: [BenchExperiment]) -> String {
        var rows: [[String]] = []
        for experiment in experiments {
            for (index, figure) in experiment.figures.enumerated() {
                rows.append([index == 0 ? experiment.name : "", figure.name, figure.formattedValue, figure.target ?? "",
                             figure.met.map { $0 ? "yes" : "NO" } ?? ""])
            }
        }
        let headers = ["EXPERIMENT", "FIGURE", "VALUE", "TARGET", "MET"]
        let all = [headers] + rows
        let widths = headers.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    static func json(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}
