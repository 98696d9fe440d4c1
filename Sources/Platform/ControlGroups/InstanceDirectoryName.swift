/// The name of a root instance's group below `hv/`: `<instance>.<pid>.<start time>`, so that a
/// later root can tell whether the process that made it is still alive (`ProcessIdentity`).
/// A cgroup v2 instance being set up may also have a `<...>.staging` sibling for a moment.
struct InstanceDirectoryName: Hashable {
    var instance: String
    var owner: ProcessIdentity
    var isStaging: Bool = false

    var text: String {
        "\(instance).\(owner.pid).\(owner.startTime)" + (isStaging ? ".staging" : "")
    }

    /// Nil for anything not of this shape (such groups are never touched).
    init?(parsing text: String) {
        var parts = text.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 4, parts[3] == "staging" {
            isStaging = true
            parts.removeLast()
        }
        guard parts.count == 3, ControlGroupNames.isValid(String(parts[0])),
              let pid = Int32(parts[1]), pid > 0, let start = UInt64(parts[2])
        else { return nil }
        instance = String(parts[0])
        owner = ProcessIdentity(pid: pid, startTime: start)
    }

    init(instance: String, owner: ProcessIdentity, isStaging: Bool = false) {
        self.instance = instance
        self.owner = owner
        self.isStaging = isStaging
    }
}

/// Which names groups may have: letters, digits, '_' and '-', at most 64 bytes, starting with a
/// letter or digit, so no name is a path, and none has the dot that `<instance>.<pid>.<start>`
/// uses as its separator.
enum ControlGroupNames {
    static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...64).contains(bytes.count), let first = bytes.first, isAlphanumeric(first) else { return false }
        return bytes.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}
