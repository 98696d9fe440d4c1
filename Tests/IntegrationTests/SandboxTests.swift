import Foundation
import Glibc
import KVM
import LocalDeployment
import ManagementAPI
import Privilege
import Testing

/// The parent partition as a compromised device back end would find it (Docs/security.md):
/// its user, privileges and descriptors read from /proc, and what it can do tried from inside
/// by `hv parent --probe-sandbox`, which enters exactly the sandbox `hv parent` does. Every test
/// here failed before the sandbox: the parent ran as root with every capability.
@Suite("The parent partition's sandbox", .enabled(if: KVMSystem.isUsable, "needs /dev/kvm"), .serialized)
struct SandboxTests {
    /// Lines `Key:\tvalue` of /proc/<pid>/status.
    static func status(of pid: Int32) throws -> [String: String] {
        let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return fields
    }

    @Test func theParentRunsAsItsOwnUserWithNoPrivileges() async throws {
        let test = try await TestDeployment.start("sandbox-user")
        defer { test.stop() }
        let pid = try #require(test.deployment.parentProcessID)
        let status = try Self.status(of: pid)
        let user = test.deployment.parentUser
        if geteuid() == 0 { #expect(user.uid != 0, "root starts the parent as an unprivileged user") }
        #expect(status["Uid"]?.split(separator: "\t").allSatisfy { $0 == "\(user.uid)" } == true, "\(status["Uid"] ?? "")")
        #expect(status["Gid"]?.split(separator: "\t").allSatisfy { $0 == "\(user.gid)" } == true, "\(status["Gid"] ?? "")")
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            #expect(status[set] == "0000000000000000", "\(set) \(status[set] ?? "")")
        }
        #expect(status["NoNewPrivs"] == "1")
        if geteuid() == 0 {
            // A socket it makes by any means (io_uring's IORING_OP_SOCKET escapes seccomp) is in
            // an empty network namespace, not the host's.
            let own = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/net")
            #expect(own != (try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")), "\(own)")
        }
        #expect(status["Seccomp"] == "2", "a seccomp filter is in force")
        #expect(Int(status["Threads"] ?? "") ?? 0 > 1)
        #expect(try String(contentsOfFile: test.deployment.parentLog, encoding: .utf8).contains("sandboxed: user"))
    }

    /// Every descriptor of the running parent is one the root handed it (each child's memfd,
    /// doorbells and event descriptors), its connection to the root, or its standard streams:
    /// no /dev/kvm, no directory, no other file.
    @Test func theParentHoldsOnlyTheDescriptorsTheRootHandedIt() async throws {
        let test = try await TestDeployment.start("sandbox-fds")
        defer { test.stop() }
        for name in ["left", "right"] {
            try await test.create(name, devices: ["heartbeat", "bench"])
            try await test.deployment.perform("start", on: name)
            _ = try await test.deployment.waitForConsole(name, containing: "probe: done")
        }
        let pid = try #require(test.deployment.parentProcessID)
        var memfds: [String] = []
        var sockets = 0
        for entry in try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") {
            let target = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(entry)")
            switch target {
            case "/dev/null" where entry == "0": continue
            case test.deployment.parentLog where entry == "1" || entry == "2": continue
            case "anon_inode:[eventfd]", "anon_inode:[eventpoll]", "anon_inode:[timerfd]", "anon_inode:[signalfd]": continue
            case _ where target.hasPrefix("socket:["): sockets += 1
            case _ where target.hasPrefix("/memfd:"): memfds.append(target)
            default: Issue.record("descriptor \(entry) of the parent is \(target)")
            }
        }
        #expect(sockets == 1, "only the connection to the root")
        #expect(memfds.sorted() == ["/memfd:hv-left (deleted)", "/memfd:hv-right (deleted)"], "\(memfds)")
    }

    /// A compromised parent cannot open /dev/kvm or any host file, signal, trace or read the root,
    /// make network sockets, run programs, fork, regain privileges or push input into a
    /// terminal; it can still do its job: reach the root's socket again, map shared memory,
    /// use eventfds and start threads.
    @Test func aCompromisedParentCannotReachTheRootOrTheHost() async throws {
        let test = try await TestDeployment.start("sandbox-probe")
        defer { test.stop() }
        let root = try await test.rootInfo().processID
        let user = test.deployment.parentUser
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestDeployment.hvExecutable)
        process.arguments = ["parent", "--runtime-dir", test.directory, "--user", "\(user.uid):\(user.gid)", "--probe-sandbox",
                             "--probe-target", "\(root)", "--probe-socket", RuntimeDirectory.parentSocket(in: test.directory),
                             "--probe-forbidden", "/etc/passwd", "--probe-forbidden", test.deployment.rootLog,
                             "--probe-forbidden", TestDeployment.hvExecutable]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        // Read to the end (the probe exits when it is done); its exit status is not awaited:
        // Foundation reaps children through SIGCHLD, which other threads of a test process may
        // block. The last outcome being there shows the probe ran to the end.
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let outcomes = String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
            try? JSONDecoder().decode(SandboxProbe.Outcome.self, from: Data($0.utf8))
        }
        #expect(outcomes.last?.attempt == "no capabilities", "the probe ran to the end")
        let allowed = Dictionary(outcomes.map { ($0.attempt, $0.allowed) }, uniquingKeysWith: { $1 })
        let denied = ["open /dev/kvm", "open /etc/passwd", "open \(test.deployment.rootLog)", "open \(TestDeployment.hvExecutable)",
                      "list /", "create /tmp/hv-sandbox-probe", "open /proc/\(root)/mem", "signal process \(root)",
                      "ptrace process \(root)", "read the memory of process \(root)", "TCP socket", "UDP socket",
                      "netlink socket", "execute a program", "fork", "become root", "new user namespace",
                      "make the process dumpable again", "push input into a terminal (TIOCSTI)",
                      "have process \(root) signalled on I/O (F_SETOWN)", "choose the signal sent on I/O (F_SETSIG)",
                      "io_uring operation outside the disk set (NOP)", "register a file with an enabled io_uring"]
        for attempt in denied {
            #expect(allowed[attempt] == false, "\(attempt): \(outcomes.first { $0.attempt == attempt }?.description ?? "not tried")")
        }
        let needed = ["connect to \(RuntimeDirectory.parentSocket(in: test.directory))", "map shared memory",
                      "signal an eventfd", "read through a disk io_uring", "start a thread",
                      "make a descriptor non-blocking (F_SETFL)", "seccomp filter in force", "no_new_privs set", "no capabilities"]
        for attempt in needed {
            #expect(allowed[attempt] == true, "\(attempt): \(outcomes.first { $0.attempt == attempt }?.description ?? "not tried")")
        }
        // The root was not disturbed.
        #expect(try await test.rootInfo().parentConnected)
    }

    /// root.sock and parent.sock have their modes and owners whatever the umask `hv root` starts
    /// with, and the runtime directory only lets the parent's user search it. Before: root.sock
    /// took its mode from the umask (0777 under umask 000).
    @Test(.enabled(if: geteuid() == 0, "needs root to give parent.sock to another user"))
    func theRootsSocketsAreRestrictedWhateverTheUmask() async throws {
        let directory = NSTemporaryDirectory() + "hv-test-umask-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let user = UserIdentity.defaultParent
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "umask 000; exec \"$0\" root --runtime-dir \"$1\" --parent-user \"$2\"",
                             TestDeployment.hvExecutable, directory, "\(user.uid):\(user.gid)"]
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        let client = ManagementClient(socketPath: RuntimeDirectory.apiSocket(in: directory))
        var up = false
        for _ in 0..<300 where !up {
            up = (try? await client.request(.GET, "/v1/root", as: RootInfo.self)) != nil
            if !up { try await Task.sleep(for: .milliseconds(100)) }
        }
        try #require(up, "hv root answers")
        func mode(_ path: String) -> (mode: mode_t, uid: uid_t)? {
            var status = stat()
            guard lstat(path, &status) == 0 else { return nil }
            return (status.st_mode & 0o7777, status.st_uid)
        }
        let api = try #require(mode(RuntimeDirectory.apiSocket(in: directory)))
        #expect(api.mode == 0o600 && api.uid == 0)
        let parent = try #require(mode(RuntimeDirectory.parentSocket(in: directory)))
        #expect(parent.mode == 0o600 && parent.uid == user.uid)
        let runtime = try #require(mode(directory))
        #expect(runtime.mode & 0o022 == 0 && runtime.mode & 0o001 == 0o001, "mode \(String(runtime.mode, radix: 8))")
    }
}
