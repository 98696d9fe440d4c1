import Foundation
import Glibc
import LinuxSupport
import Privilege
import Testing

@Suite("Users and peer credentials")
struct UserIdentityTests {
    @Test func namesNumbersAndPairsResolve() throws {
        #expect(try UserIdentity.resolve("0").uid == 0)
        #expect(try UserIdentity.resolve("4242:4343") == UserIdentity(uid: 4242, gid: 4343))
        #expect(try UserIdentity.resolve("root").uid == 0)
        #expect(throws: PrivilegeError.unknownUser("no-such-user-hv")) { try UserIdentity.resolve("no-such-user-hv") }
        #expect(throws: PrivilegeError.self) { try UserIdentity.resolve("1:2:3") }
        #expect(throws: PrivilegeError.self) { try UserIdentity.resolve("4294967295") }
    }

    /// The parent's default user is never root: a dedicated account, nobody, or 65534.
    @Test func theDefaultParentUserIsUnprivilegedWhenRootStartsIt() {
        let user = UserIdentity.defaultParent
        if geteuid() == 0 { #expect(user.uid != 0) } else { #expect(user.uid == geteuid()) }
    }

    @Test func aSocketPairsPeerIsThisProcess() throws {
        let (left, _) = try SequencedPacketSocket.pair()
        let peer = try left.peerCredentials()
        #expect(peer == PeerCredentials(processID: getpid(), uid: geteuid(), gid: getegid()))
    }
}

@Suite("Secure runtime directories and socket publication")
struct SecureDirectoryTests {
    func scratch() throws -> String {
        let path = NSTemporaryDirectory() + "hv-privilege-\(UUID().uuidString)"
        return path
    }

    @Test func aMissingDirectoryIsCreatedPrivate() throws {
        let path = try scratch() + "/nested/runtime"
        defer { try? FileManager.default.removeItem(atPath: String(path.dropLast("/nested/runtime".count))) }
        try SecureDirectory.prepare(path, searchable: false)
        var status = stat()
        #expect(stat(path, &status) == 0 && status.st_mode & 0o777 == 0o700)
        try SecureDirectory.prepare(path, searchable: true)
        #expect(stat(path, &status) == 0 && status.st_mode & 0o777 == 0o711)
    }

    @Test func writableByOthersOrALinkIsRefused() throws {
        let path = try scratch()
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(mkdir(path, 0o700) == 0)
        chmod(path, 0o770)
        #expect(throws: PrivilegeError.self) { try SecureDirectory.prepare(path, searchable: false) }
        chmod(path, 0o700)
        try SecureDirectory.prepare(path, searchable: false)
        let link = path + "-link"
        #expect(symlink(path, link) == 0)
        defer { unlink(link) }
        #expect(throws: PrivilegeError.self) { try SecureDirectory.prepare(link, searchable: false) }
    }

    @Test func aPublishedSocketHasItsModeAndNoStagingIsLeft() throws {
        let path = try scratch()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SecureDirectory.prepare(path, searchable: false)
        let socket = try SequencedPacketSocket.listen(path: path + "/test.sock", mode: 0o600)
        _ = socket
        var status = stat()
        #expect(lstat(path + "/test.sock", &status) == 0)
        #expect(status.st_mode & S_IFMT == S_IFSOCK && status.st_mode & 0o777 == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: path) == ["test.sock"])
        // A peer reaches it at its final path.
        _ = try SequencedPacketSocket.connect(path: path + "/test.sock")
    }

    /// A group of -1 (`hv root --api-group 4294967295`) is chown(2)'s "leave it": the socket
    /// would keep the process's own group and open to it with a group mode. It is refused, and
    /// nothing is published.
    @Test func aSocketIsNotHandedToGroupMinusOne() throws {
        let path = try scratch()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SecureDirectory.prepare(path, searchable: false)
        #expect(throws: PrivilegeError.self) {
            _ = try SequencedPacketSocket.listen(path: path + "/api.sock", mode: 0o660, group: gid_t.max)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: path).isEmpty)
    }
}

@Suite("Acting with another user's rights", .enabled(if: geteuid() == 0, "needs root"))
struct ThreadIdentityTests {
    static let stranger = UserIdentity(uid: 65534, gid: 65534)

    /// The kernel checks the caller's rights on the thread that carries its identity; the rest
    /// of the process keeps its own.
    @Test func filesAreOpenedWithTheCallersRightsOnly() throws {
        let path = NSTemporaryDirectory() + "hv-identity-\(UUID().uuidString)"
        #expect(FileManager.default.createFile(atPath: path, contents: Data([1]), attributes: [.posixPermissions: 0o600]))
        defer { unlink(path) }
        let denied = try ThreadIdentity.withFileSystemIdentity(of: Self.stranger) { () -> Int32 in
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd >= 0 { close(fd); return 0 }
            return errno
        }
        #expect(denied == EACCES)
        let own = open(path, O_RDONLY | O_CLOEXEC)
        #expect(own >= 0)
        close(own)
        chmod(path, 0o644)
        let allowed = try ThreadIdentity.withFileSystemIdentity(of: Self.stranger) { () -> Int32 in
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd >= 0 { close(fd); return 0 }
            return errno
        }
        #expect(allowed == 0)
        #expect(geteuid() == 0, "the process keeps its own identity")
    }

    @Test func aThreadCanBeAnotherUserEntirely() throws {
        let ids = try ThreadIdentity.asUser(Self.stranger) { (geteuid(), getegid()) }
        #expect(ids == (65534, 65534))
        #expect(geteuid() == 0)
    }
}

@Suite("The parent's sandbox parts")
struct SandboxPartsTests {
    /// The allow-list never lets the parent exec, trace, fork or reach other processes' memory.
    @Test func theParentsAllowListLeavesOutWhatACompromisedParentWouldUse() {
        let names = Set(SeccompFilter.parentPartition().rules.filter { $0.errno == nil }.map(\.name))
        for forbidden in ["execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev", "fork", "vfork",
                          "setuid", "setresuid", "mount", "unshare", "setns", "bpf", "init_module", "kexec_load",
                          "pidfd_getfd", "keyctl", "perf_event_open", "userfaultfd", "bind", "listen", "accept4"] {
            #expect(!names.contains(forbidden), "\(forbidden) is allowed")
        }
        // Threads only, signals to itself only, Unix sockets only.
        let conditional = SeccompFilter.parentPartition().rules.filter { ["clone", "kill", "tgkill", "socket"].contains($0.name) }
        #expect(conditional.allSatisfy { !$0.comparisons.isEmpty })
        #expect(!SeccompFilter.parentIoctlRequests.contains(0x5412), "TIOCSTI")
    }

    /// libseccomp builds the filter from the runtime library alone (no headers at build time).
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/libseccomp.so.2")
                   || FileManager.default.fileExists(atPath: "/lib/x86_64-linux-gnu/libseccomp.so.2"), "no libseccomp2"))
    func theFilterCompilesWithTheRuntimeLibrary() throws {
        let compiled = try SeccompFilter.parentPartition().compile()
        #expect(compiled.ruleCount > 100)
    }

    @Test func landlockReportsItsABIWhereTheKernelHasIt() {
        if let abi = Landlock.abiVersion { #expect(abi >= 1) }
    }
}

@Suite("Process handles")
struct ProcessHandleTests {
    /// A handle says when the process it holds exits, and cannot be made for one that is gone.
    @Test func aHandleSeesItsProcessExit() throws {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sleep")
        child.arguments = ["60"]
        try child.run()
        let handle = try ProcessHandle(processID: child.processIdentifier)
        #expect(!handle.hasExited)
        #expect(kill(child.processIdentifier, SIGKILL) == 0)
        child.waitUntilExit()
        #expect(handle.hasExited)
        #expect(throws: SystemError.self) { try ProcessHandle(processID: child.processIdentifier) }
    }
}
