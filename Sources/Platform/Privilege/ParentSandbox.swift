import CPrivilege
import Foundation
import Glibc
import LinuxSupport

/// The parent partition's sandbox, entered once at start-up before it reaches the root (the
/// model is Firecracker's jailer and Hyper-V's worker processes): what a compromised device
/// back end in the parent can do is only what this leaves.
///
/// 1. Descriptors: every inherited one but the standard streams is closed, and standard input
///    is /dev/null, so the parent holds nothing but what the root hands it later.
/// 2. Network: a process started as root moves into an empty network namespace of its own, so a
///    socket it makes (through io_uring's IORING_OP_SOCKET, say, which seccomp never sees)
///    reaches no network; the TAP and packet-socket descriptors the root hands it stay in the
///    host's, and the root's socket is reached by its path. Where the kernel refuses (no
///    CAP_SYS_ADMIN), it keeps the root's, and `Report.ownNetwork` says so.
/// 3. User: a root process becomes `user` (groups, then GID, then UID; every capability goes,
///    the bounding set first); any process keeps no capabilities and is not dumpable (so no
///    process of its user can ptrace it or read its memory through /proc).
/// 4. no_new_privs: nothing it could execute gains privileges.
/// 5. Landlock: no file opens but reads of the libraries it runs on and of its own /proc entries,
///    no TCP, and (kernel 6.12+) no signals to or abstract sockets of processes outside the sandbox.
/// 6. seccomp: the allow-list of `SeccompFilter.parentPartition`.
///
/// Landlock and per-thread credentials apply to the calling thread and the threads it starts
/// afterwards, so the sandbox is entered while the process has one thread, and refused
/// otherwise.
public enum ParentSandbox {
    /// What was enforced, for the log and for tests.
    public struct Report: Sendable, CustomStringConvertible {
        public var user: UserIdentity
        /// The user the process was started as (its root scheduler's, normally).
        public var formerUser: uid_t
        public var landlock: Landlock.Enforcement?
        public var seccompRules: Int
        /// Whether the process has a network namespace of its own (it was started as root).
        public var ownNetwork: Bool

        public var description: String {
            let filesystem: String
            if let landlock {
                filesystem = "Landlock ABI \(landlock.abi) (no file access\(landlock.network ? ", no TCP" : "")"
                    + "\(landlock.scoped ? ", signals and abstract sockets confined" : ""))"
            } else {
                filesystem = "no Landlock in this kernel"
            }
            return "user \(user), \(ownNetwork ? "an empty network namespace, " : "")no capabilities, no_new_privs, "
                + "not dumpable, \(filesystem), seccomp allow-list (\(seccompRules) rules)"
        }
    }

    /// Enters the sandbox as `user` (see the type's description).
    /// - Throws: `.refused` if the process already has more than one thread or `user` is root;
    ///   `.unavailable` without libseccomp; `.system` if a step fails. A failure leaves the
    ///   process partly confined: it must exit.
    public static func enter(as user: UserIdentity) throws(PrivilegeError) -> Report {
        let formerUser = geteuid()
        guard user.uid != 0 else {
            throw .refused("The parent partition does not run as root: give it an unprivileged user with --user.")
        }
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0
        guard threads == 1 else {
            throw .refused("The sandbox must be entered before the process starts threads (it has \(threads)).")
        }
        try closeInheritedDescriptors()
        // What must be read or loaded before Landlock hides it: the time zone (logs), libseccomp.
        tzset()
        let filter = try SeccompFilter.parentPartition().compile()
        // What the runtime still reads: its libraries (should it load a part lazily), the CPU
        // count (Dispatch), and its own threads' /proc/<pid>/task/<tid>/stat (Dispatch's thread
        // pool monitor, which crashes the process if it cannot). /proc/self resolves to this
        // process's directory only: Landlock checks the path a file was reached by, so
        // /proc/self/root/… and other processes stay out of reach.
        let readable = libraryDirectories() + ["/sys/devices/system/cpu", "/proc/self"]

        guard cpriv_prctl(CPRIV_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 else { throw .system(.current("make the process not dumpable")) }
        // A root without CAP_SYS_ADMIN (a container's default) cannot make one: the parent then
        // shares the root's, as a parent started by a non-root root does, and its report says so.
        let ownNetwork = geteuid() == 0 && cpriv_unshare(CPRIV_CLONE_NEWNET) == 0
        if geteuid() == 0 {
            try becomeUser(user)
        } else if user.uid != geteuid() {
            throw .refused("Only root can run the parent partition as another user (\(user)); this process is uid \(geteuid()).")
        }
        _ = cpriv_prctl(CPRIV_PR_CAP_AMBIENT, UInt(CPRIV_PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0)
        guard cpriv_clear_capabilities() == 0 else { throw .system(.current("drop every capability")) }
        guard cpriv_prctl(CPRIV_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 else { throw .system(.current("set no_new_privs")) }
        let landlock = try Landlock.restrictSelf(readable: readable)
        try filter.load()
        return Report(user: user, formerUser: formerUser, landlock: landlock, seccompRules: filter.ruleCount,
                      ownNetwork: ownNetwork)
    }

    /// Closes every descriptor above standard error, and points standard input at /dev/null (a
    /// terminal there would be a way out: TIOCSTI, job control).
    static func closeInheritedDescriptors() throws(PrivilegeError) {
        guard cpriv_close_range(3, UInt32.max, 0) == 0 else { throw .system(.current("close inherited descriptors")) }
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard null >= 0 else { throw .system(.current("open /dev/null")) }
        defer { close(null) }
        guard dup2(null, 0) == 0 else { throw .system(.current("point standard input at /dev/null")) }
    }

    /// Drops the bounding set, then takes `user`'s groups, GID and UID (glibc applies them to
    /// every thread; there is only one).
    static func becomeUser(_ user: UserIdentity) throws(PrivilegeError) {
        let last = (try? String(contentsOfFile: "/proc/sys/kernel/cap_last_cap", encoding: .utf8))
            .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 40
        for capability in 0...last {
            _ = cpriv_prctl(CPRIV_PR_CAPBSET_DROP, UInt(capability), 0, 0, 0)
        }
        // The raw system calls change the calling thread, which is the only one.
        var groups = [user.gid]
        guard cpriv_thread_setgroups(1, &groups) == 0 else { throw .system(.current("set the groups of \(user)")) }
        guard cpriv_thread_setresgid(user.gid) == 0 else { throw .system(.current("become group \(user.gid)")) }
        guard cpriv_thread_setresuid(user.uid) == 0 else { throw .system(.current("become user \(user)")) }
        var real = uid_t(), effective = uid_t(), saved = uid_t()
        guard cpriv_getresuid(&real, &effective, &saved) == 0, real == user.uid, effective == user.uid, saved == user.uid else {
            throw .refused("The process did not become \(user).")
        }
        // Leaving uid 0 clears the permitted and effective capability sets (capabilities(7)).
        guard cpriv_prctl(CPRIV_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 else { throw .system(.current("make the process not dumpable")) }
    }

    /// The directories of the shared objects mapped now (the runtime, Foundation, glibc): the
    /// one thing the sandboxed parent may read, in case the runtime loads a part lazily.
    static func libraryDirectories() -> [String] {
        guard let maps = try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8) else { return [] }
        var directories = Set<String>()
        for line in maps.split(separator: "\n") {
            guard let path = line.split(separator: " ", omittingEmptySubsequences: true).last, path.hasPrefix("/"),
                  path.contains(".so") else { continue }
            if let slash = path.lastIndex(of: "/"), slash != path.startIndex { directories.insert(String(path[..<slash])) }
        }
        return directories.sorted()
    }
}
