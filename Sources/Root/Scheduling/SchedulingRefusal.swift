/// Why a configuration of partitions cannot be scheduled, as a sentence for the user.
public enum SchedulingRefusal: Error, Hashable, CustomStringConvertible {
    /// The host description itself is unusable (no processors, bad parent processors, ...).
    case host(String)
    /// One partition's demand is malformed (processor count, pinning, a duplicate name).
    case partition(name: String, reason: String)
    /// These partitions' reserves need more than the processors they may run on.
    case reservesExceedCapacity(partitions: [String], neededHundredths: Int, processors: [Int])

    public var description: String {
        switch self {
        case .host(let reason):
            return reason
        case .partition(let name, let reason):
            return "Partition \(name): \(reason)"
        case .reservesExceedCapacity(let partitions, let needed, let processors):
            let who = partitions.count == 1 ? "partition \(partitions[0])" : "partitions " + Self.list(partitions)
            let on = processors.count == 1 ? "processor" : "processors"
            return "The processor reserves of \(who) need \(Self.processorCount(hundredths: needed)) host "
                + "processors, but they may run only on host \(on) \(ProcessorList.format(processors)) "
                + "(\(processors.count) in all), so not every reserve could be met under contention."
        }
    }

    /// "1.5" for 150 hundredths, "2" for 200.
    static func processorCount(hundredths: Int) -> String {
        let whole = hundredths / 100
        let fraction = hundredths % 100
        if fraction == 0 { return "\(whole)" }
        if fraction % 10 == 0 { return "\(whole).\(fraction / 10)" }
        return fraction < 10 ? "\(whole).0\(fraction)" : "\(whole).\(fraction)"
    }

    static func list(_ names: [String]) -> String {
        guard names.count > 1, let last = names.last else { return names.first ?? "" }
        return names.dropLast().joined(separator: ", ") + " and " + last
    }
}

/// The kernel's list format for processor numbers ("0-3,8"), for messages.
enum ProcessorList {
    static func format(_ processors: [Int]) -> String {
        var parts: [String] = []
        var index = 0
        let sorted = processors.sorted()
        while index < sorted.count {
            var end = index
            while end + 1 < sorted.count, sorted[end + 1] == sorted[end] + 1 { end += 1 }
            parts.append(end == index ? "\(sorted[index])" : "\(sorted[index])-\(sorted[end])")
            index = end + 1
        }
        return parts.joined(separator: ",")
    }
}
