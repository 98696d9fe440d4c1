/// One line of /proc/self/mountinfo (Documentation/filesystems/proc.rst, "/proc/<pid>/mountinfo").
struct MountEntry: Equatable {
    /// The directory the hierarchy is mounted on.
    var mountPoint: String
    /// The directory of the file system (here: the cgroup) that is mounted there.
    var root: String
    /// "cgroup" (v1) or "cgroup2".
    var fileSystemType: String
    /// Per-mount options ("rw", "ro", ...).
    var mountOptions: [String]
    /// Per-superblock options; for cgroup v1 they name the hierarchy's controllers.
    var superOptions: [String]

    var isReadOnly: Bool { mountOptions.contains("ro") || superOptions.contains("ro") }
}

enum MountTable {
    /// Parses mountinfo text; lines that do not have the documented shape are skipped.
    static func parse(_ text: String) -> [MountEntry] {
        text.split(separator: "\n").compactMap { parseLine(Substring($0)) }
    }

    /// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
    static func parseLine(_ line: Substring) -> MountEntry? {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 10, let separator = fields.firstIndex(of: "-"), separator >= 6,
              fields.count >= separator + 4
        else { return nil }
        return MountEntry(
            mountPoint: unescape(fields[4]),
            root: unescape(fields[3]),
            fileSystemType: String(fields[separator + 1]),
            mountOptions: fields[5].split(separator: ",").map(String.init),
            superOptions: fields[separator + 3].split(separator: ",").map(String.init))
    }

    /// Undoes the kernel's octal escapes of space, tab, newline and backslash (fs/proc_namespace.c:
    /// mangle, "\\040" for a space).
    static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        let source = Array(field.utf8)
        var index = 0
        while index < source.count {
            if source[index] == UInt8(ascii: "\\"), index + 3 < source.count,
               let value = octal(source[(index + 1)...(index + 3)])
            {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(source[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func octal(_ digits: ArraySlice<UInt8>) -> UInt8? {
        var value = 0
        for digit in digits {
            guard (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(digit) else { return nil }
            value = value * 8 + Int(digit - UInt8(ascii: "0"))
        }
        return value <= 255 ? UInt8(value) : nil
    }
}

/// One line of /proc/<pid>/cgroup: `hierarchy-ID:controller-list:cgroup-path` (man 7 cgroups).
struct ProcessGroupEntry: Equatable {
    /// 0 for the v2 hierarchy.
    var hierarchyID: Int
    /// The v1 hierarchy's controllers ("cpu", "cpuacct", "name=systemd"); empty for v2.
    var controllers: [String]
    /// The cgroup, relative to the hierarchy's root ("/" for the root).
    var path: String
}

enum ProcessGroups {
    static func parse(_ text: String) -> [ProcessGroupEntry] {
        text.split(separator: "\n").compactMap { line in
            // The path may itself contain ':'; only the first two separate fields.
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, let id = Int(fields[0]), id >= 0, fields[2].hasPrefix("/") else { return nil }
            return ProcessGroupEntry(
                hierarchyID: id,
                controllers: fields[1].split(separator: ",").map(String.init),
                path: String(fields[2]))
        }
    }
}
