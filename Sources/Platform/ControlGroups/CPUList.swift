/// The kernel's CPU list format ("0-3,8,10-11"), as `cpuset.cpus` and
/// /sys/devices/system/cpu/online use it (Documentation/admin-guide/cgroup-v1/cpusets.rst).
public enum CPUList {
    /// The largest processor number accepted (the kernel's NR_CPUS is at most 8192).
    public static let largestProcessor = 8191

    /// Parses a list; an empty (or whitespace) string is the empty list. `path` only names the
    /// source in the error.
    public static func parse(_ text: String, path: String = "CPU list") throws(ControlGroupError) -> [Int] {
        var processors = Set<Int>()
        let trimmed = text.split(whereSeparator: { $0 == "\n" || $0 == " " }).joined()
        for item in trimmed.split(separator: ",") {
            let bounds = item.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 1 || bounds.count == 2,
                  let low = Int(bounds[0]), let high = Int(bounds[bounds.count - 1]),
                  (0...largestProcessor).contains(low), (low...largestProcessor).contains(high)
            else { throw .malformed(path: path, content: text) }
            for processor in low...high { processors.insert(processor) }
        }
        return processors.sorted()
    }

    /// Formats processors as a list ("0-3,8"); duplicates and order do not matter.
    public static func format(_ processors: [Int]) -> String {
        let sorted = Array(Set(processors)).sorted()
        var parts: [String] = []
        var index = 0
        while index < sorted.count {
            var end = index
            while end + 1 < sorted.count, sorted[end + 1] == sorted[end] + 1 { end += 1 }
            parts.append(end == index ? "\(sorted[index])" : "\(sorted[index])-\(sorted[end])")
            index = end + 1
        }
        return parts.joined(separator: ",")
    }
}
