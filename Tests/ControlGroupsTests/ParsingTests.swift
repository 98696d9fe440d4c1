@testable import ControlGroups
import TestSupport
import Testing

@Suite("Parsing /proc and cgroup files")
struct ParsingTests {
    static let mountInfo = """
        23 1 0:21 / / rw,relatime - ext4 /dev/vda rw
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
        34 31 0:31 /docker/abc /sys/fs/cgroup/cpuset ro,relatime - cgroup cgroup rw,cpuset
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
        50 23 0:40 / /mnt/with\\040space rw - tmpfs none rw
        """

    @Test func mountInfoLinesGiveMountPointRootTypeAndOptions() {
        let entries = MountTable.parse(Self.mountInfo)
        #expect(entries.count == 7)
        #expect(entries[2] == MountEntry(mountPoint: "/sys/fs/cgroup/cpu", root: "/", fileSystemType: "cgroup",
                                         mountOptions: ["rw", "relatime"], superOptions: ["rw", "cpu"]))
        // Optional fields ("shared:9") come before the separator.
        #expect(entries[3].superOptions == ["rw", "cpu", "cpuacct"])
        #expect(entries[4].root == "/docker/abc" && entries[4].isReadOnly)
        #expect(entries[5].fileSystemType == "cgroup2")
        #expect(entries[6].mountPoint == "/mnt/with space")
    }

    @Test func malformedMountInfoLinesAreSkipped() {
        #expect(MountTable.parse("garbage\n1 2 3\n\n36 35 98:0 / /x rw no-separator here at all") == [])
    }

    @Test func processGroupLinesKeepColonsInPaths() {
        let entries = ProcessGroups.parse("""
            9:name=systemd:/
            2:cpu,cpuacct:/a:b/c
            0::/user.slice
            x:bad:/
            3:cpuset:relative
            """)
        #expect(entries == [
            ProcessGroupEntry(hierarchyID: 9, controllers: ["name=systemd"], path: "/"),
            ProcessGroupEntry(hierarchyID: 2, controllers: ["cpu", "cpuacct"], path: "/a:b/c"),
            ProcessGroupEntry(hierarchyID: 0, controllers: [], path: "/user.slice"),
        ])
    }

    @Test func groupDirectoriesFollowTheMountsRoot() {
        let root = MountEntry(mountPoint: "/sys/fs/cgroup/cpu", root: "/", fileSystemType: "cgroup",
                              mountOptions: [], superOptions: ["cpu"])
        #expect(ControlGroupHierarchy.directory(of: "/", in: root) == "/sys/fs/cgroup/cpu")
        #expect(ControlGroupHierarchy.directory(of: "/a/b", in: root) == "/sys/fs/cgroup/cpu/a/b")
        let container = MountEntry(mountPoint: "/sys/fs/cgroup", root: "/docker/abc", fileSystemType: "cgroup2",
                                   mountOptions: [], superOptions: [])
        #expect(ControlGroupHierarchy.directory(of: "/docker/abc", in: container) == "/sys/fs/cgroup")
        #expect(ControlGroupHierarchy.directory(of: "/docker/abc/x", in: container) == "/sys/fs/cgroup/x")
        #expect(ControlGroupHierarchy.directory(of: "/docker/abcd", in: container) == nil)
        #expect(ControlGroupHierarchy.directory(of: "/other", in: container) == nil)
    }

    @Test func noHierarchyAtAllIsReportedInOneSentence() {
        guard case .unavailable(let reason) = ControlGroupHierarchy.discover(mounts: [], groups: []) else {
            Issue.record("discovery found a hierarchy in nothing")
            return
        }
        #expect(reason == "Processor controls are off, and partitions run uncontrolled: this process is in no "
            + "cgroup v2 hierarchy; no cgroup v1 hierarchy has the cpu controller.")
    }

    @Test func cpuListsParseAndFormat() throws {
        #expect(try CPUList.parse("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11])
        #expect(try CPUList.parse("\n") == [])
        #expect(try CPUList.parse("1,1,0") == [0, 1])
        #expect(CPUList.format([11, 0, 1, 2, 10, 3, 8]) == "0-3,8,10-11")
        #expect(CPUList.format([]) == "")
        for bad in ["a", "3-1", "-1", "1-", "0-9000", "1,,2x", "99999999999999999999"] {
            #expect(throws: ControlGroupError.self, "\(bad)") { try CPUList.parse(bad) }
        }
    }

    @Test func mutatedInputsNeverTrapTheParsers() {
        var random = SeededGenerator(seed: 0xC9_60_0F)
        let seeds = [Self.mountInfo, "0::/\n4:cpu:/hv\n", "0-3,8,10-11\n",
                     "1234 (spin (a) b) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22"]
        for _ in 0..<2000 {
            var bytes = Array(seeds[Int.random(in: 0..<seeds.count, using: &random)].utf8)
            for _ in 0..<Int.random(in: 1...8, using: &random) where !bytes.isEmpty {
                let index = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0...2, using: &random) {
                case 0: bytes[index] = UInt8.random(in: 0...255, using: &random)
                case 1: bytes.remove(at: index)
                default:
                    let interesting = Array("-,: ()\\\n0".utf8)
                    bytes.insert(interesting[Int.random(in: 0..<interesting.count, using: &random)], at: index)
                }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            _ = MountTable.parse(text)
            _ = ProcessGroups.parse(text)
            _ = try? CPUList.parse(text)
            _ = try? ProcStat.fields(text, path: "test")
            _ = InstanceDirectoryName(parsing: text)
        }
    }

    @Test func statFieldsSurviveParenthesesInTheCommand() throws {
        let fields = try ProcStat.fields(
            "77 (a) b) (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", path: "stat")
        #expect(fields[0] == "S")
        #expect(fields[ProcStat.userTime] == "11" && fields[ProcStat.systemTime] == "12")
        #expect(fields[ProcStat.startTime] == "19")
        #expect(throws: ControlGroupError.self) { try ProcStat.fields("77 (short) S 1 2", path: "stat") }
    }

    @Test func instanceDirectoryNamesRoundTrip() {
        let name = InstanceDirectoryName(instance: "default", owner: ProcessIdentity(pid: 42, startTime: 1234))
        #expect(name.text == "default.42.1234")
        #expect(InstanceDirectoryName(parsing: "default.42.1234") == name)
        let staging = InstanceDirectoryName(instance: "a-b", owner: ProcessIdentity(pid: 7, startTime: 0), isStaging: true)
        #expect(InstanceDirectoryName(parsing: staging.text) == staging)
        for other in ["default", "default.42", "default.x.1", "de.fault.1.2", ".1.2", "a.0.1", "a.1.2.other", "partition-a"] {
            #expect(InstanceDirectoryName(parsing: other) == nil, "\(other)")
        }
    }

    @Test func groupNamesAreLettersDigitsUnderscoresAndDashes() {
        #expect(ControlGroupNames.isValid("alpha") && ControlGroupNames.isValid("vm-0_a"))
        for bad in ["", "-a", "_a", "a.b", "../x", "a/b", "a b", String(repeating: "a", count: 65), "é"] {
            #expect(!ControlGroupNames.isValid(bad), "\(bad)")
        }
    }

    @Test func settingsBeyondTheCapabilitiesAreDroppedWithASentence() {
        let settings = CPUGroupSettings(
            shares: 512, weight: 50, bandwidth: CPUBandwidth(quotaMicroseconds: 50_000, periodMicroseconds: 100_000),
            processors: [1])
        let none = ControlGroupCapabilities(weights: true, bandwidth: false, cpuset: false, usage: true)
        let (restricted, dropped) = settings.restricted(to: none)
        #expect(restricted == CPUGroupSettings(shares: 512, weight: 50))
        #expect(dropped == ["The processor limit is not enforced: this kernel has no CFS bandwidth control.",
                            "Processors are not pinned: there is no writable cpuset controller."])
        let all = ControlGroupCapabilities(weights: true, bandwidth: true, cpuset: true, usage: true)
        #expect(settings.restricted(to: all).settings == settings && settings.restricted(to: all).dropped.isEmpty)
    }

    @Test func pathsJoinWithSingleSlashes() {
        #expect(joinPath("/sys/fs/cgroup/cpu", "/") == "/sys/fs/cgroup/cpu")
        #expect(joinPath("/sys/fs/cgroup/cpu/", "/a/", "b") == "/sys/fs/cgroup/cpu/a/b")
        #expect(joinPath("/", "a") == "/a")
    }
}
