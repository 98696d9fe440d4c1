import Foundation

/// What a host process holds at one moment: memory (from /proc/<pid>/status), open
/// descriptors and threads.
public struct ProcessSample: Codable, Sendable, Equatable {
    /// Resident anonymous memory: heap, stacks (RssAnon), bytes.
    public var anonymousBytes: UInt64
    /// Resident file-backed memory: the executable and libraries (RssFile), bytes.
    public var fileBytes: UInt64
    /// Resident shared memory: here, the guest RAM it has mapped and touched (RssShmem), bytes.
    public var sharedBytes: UInt64
    public var descriptors: Int
    public var threads: Int
    /// The name of each thread (comm), which says what it serves: the root's are `vp<n>` and KVM's
    /// `kvm-nx-lpage-re…` per partition; the parent's `child<id>`, `ch<relid>`, `echo-<id>`, `raw<relid>`.
    public var threadNames: [String]

    /// Threads serving partitions: named with one of `prefixes`. Others (the API's and the
    /// runtime's pools) come and go on their own.
    public func threads(named prefixes: [String]) -> Int {
        threadNames.filter { name in prefixes.contains { name.hasPrefix($0) } }.count
    }

    /// What the root starts per partition.
    public static let rootPartitionThreads = ["vp", "kvm-", "teardown"]
    /// What the parent starts per partition.
    public static let parentPartitionThreads = ["child", "ch", "echo-", "raw", "detach"]

    /// Resident memory that is not guest RAM.
    public var ownBytes: UInt64 { anonymousBytes + fileBytes }

    public static func of(pid: Int32) throws -> ProcessSample {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        func kibibytes(_ key: String) -> UInt64 {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else { return 0 }
            return line.split(separator: " ").compactMap { UInt64($0) }.first.map { $0 * 1024 } ?? 0
        }
        let threads = status.split(separator: "\n").first { $0.hasPrefix("Threads:") }?
            .split(separator: "\t").last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? 0
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
        let names = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").compactMap { tid in
            (try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/comm", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return ProcessSample(anonymousBytes: kibibytes("RssAnon"), fileBytes: kibibytes("RssFile"),
                             sharedBytes: kibibytes("RssShmem"), descriptors: descriptors, threads: threads,
                             threadNames: names.sorted())
    }
}
