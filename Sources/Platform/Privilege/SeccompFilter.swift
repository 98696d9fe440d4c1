import CPrivilege
import Glibc
import LinuxSupport
import SystemPackage

/// A seccomp system-call filter (seccomp(2)) built with libseccomp, loaded at run time with
/// dlopen(3) from the runtime library (`libseccomp.so.2`, Debian's `libseccomp2`), so building hv
/// needs no libseccomp headers. Everything not allowed fails with EPERM; system calls of another
/// architecture's ABI (x32, i386 on x86-64) kill the process (libseccomp's default).
public struct SeccompFilter: Sendable {
    /// One rule: a system call by name, allowed (or answered with `errno`) when every comparison
    /// holds.
    public struct Rule: Sendable, Equatable {
        public var name: String
        public var comparisons: [Comparison]
        /// nil: allow; otherwise fail with this errno.
        public var errno: Int32?

        public static func allow(_ name: String, _ comparisons: Comparison...) -> Rule {
            Rule(name: name, comparisons: comparisons, errno: nil)
        }

        public static func fail(_ name: String, with errno: Int32) -> Rule {
            Rule(name: name, comparisons: [], errno: errno)
        }
    }

    /// A comparison of one argument (index 0-5) of the call.
    public struct Comparison: Sendable, Equatable {
        public var argument: UInt32
        public var operation: Operation
        public var value: UInt64
        /// The mask, for `.maskedEqual`.
        public var mask: UInt64 = 0

        public enum Operation: Int32, Sendable {
            case notEqual = 1, less = 2, lessOrEqual = 3, equal = 4, greaterOrEqual = 5, greater = 6, maskedEqual = 7
        }

        public static func argument(_ index: UInt32, equals value: UInt64) -> Comparison {
            Comparison(argument: index, operation: .equal, value: value)
        }

        public static func argument(_ index: UInt32, _ operation: Operation, _ value: UInt64) -> Comparison {
            Comparison(argument: index, operation: operation, value: value)
        }

        /// (argument & mask) == value.
        public static func argument(_ index: UInt32, masked mask: UInt64, equals value: UInt64) -> Comparison {
            Comparison(argument: index, operation: .maskedEqual, value: value, mask: mask)
        }
    }

    public var rules: [Rule]

    public init(rules: [Rule]) {
        self.rules = rules
    }

    /// The runtime library the filter is built with.
    public static let library = "libseccomp.so.2"

    static let allowAction: UInt32 = 0x7FFF_0000
    static func errnoAction(_ value: Int32) -> UInt32 { 0x0005_0000 | (UInt32(value) & 0xFFFF) }
    static let threadSynchronizationAttribute: Int32 = 4  // SCMP_FLTATR_CTL_TSYNC

    /// The filter built by libseccomp, ready to load.
    public final class Compiled {
        private let api: cpriv_seccomp_api
        // SAFETY: the context libseccomp allocated, used only through its API and released once.
        private let context: UnsafeMutableRawPointer
        /// The rules it holds (names this architecture lacks are skipped).
        public let ruleCount: Int

        fileprivate init(api: cpriv_seccomp_api, context: UnsafeMutableRawPointer, ruleCount: Int) {
            self.api = api
            self.context = context
            self.ruleCount = ruleCount
        }

        /// Installs the filter on every thread of the process (SECCOMP_FILTER_FLAG_TSYNC).
        public func load() throws(PrivilegeError) {
            let result = api.load?(context) ?? -Int32(ENOSYS)
            guard result == 0 else { throw .system(SystemError("load the seccomp filter", errno: Errno(rawValue: -result))) }
        }

        deinit { api.release?(context) }
    }

    /// Loads libseccomp and builds the filter (before anything confines reading the library).
    public func compile() throws(PrivilegeError) -> Compiled {
        var api = cpriv_seccomp_api()
        guard cpriv_seccomp_open(Self.library, &api) == 0, let initialize = api.`init`, let add = api.rule_add_array,
              let setAttribute = api.attr_set, let resolve = api.syscall_resolve_name else {
            throw .unavailable("The parent's system-call filter needs libseccomp (\(Self.library)): install it "
                               + "(Debian: apt-get install libseccomp2), or run the parent with --no-sandbox.")
        }
        guard let context = initialize(Self.errnoAction(EPERM)) else {
            throw .unavailable("libseccomp could not create a filter.")
        }
        _ = setAttribute(context, Self.threadSynchronizationAttribute, 1)
        var installed = 0
        for rule in rules {
            let number = resolve(rule.name)
            guard number >= 0 else { continue }
            let comparisons = rule.comparisons.map {
                cpriv_scmp_arg_cmp(arg: $0.argument, op: $0.operation.rawValue,
                                   datum_a: $0.operation == .maskedEqual ? $0.mask : $0.value, datum_b: $0.value)
            }
            let action = rule.errno.map(Self.errnoAction) ?? Self.allowAction
            // SAFETY: libseccomp copies the comparisons during the call; the buffer outlives it and
            // holds exactly `count` elements.
            let result = comparisons.withUnsafeBufferPointer { add(context, action, number, UInt32($0.count), $0.baseAddress) }
            guard result == 0 else {
                api.release?(context)
                throw .system(SystemError("add the seccomp rule for \(rule.name)", errno: Errno(rawValue: -result)))
            }
            installed += 1
        }
        return Compiled(api: api, context: context, ruleCount: installed)
    }
}

extension SeccompFilter {
    /// The fcntl commands the parent may use: F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, the
    /// record locks (F_GETLK, F_SETLK, F_SETLKW and their F_OFD_ forms), F_GETOWN, F_GETSIG,
    /// F_GETOWN_EX, F_GETLEASE, F_DUPFD_CLOEXEC, the pipe sizes and the seals (<linux/fcntl.h>).
    static let parentFcntlCommands: [UInt64] = [0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 16, 36, 37, 38, 1025, 1030, 1031, 1032, 1033, 1034]

    /// What the parent partition may call once it serves guests: threads, memory, waiting,
    /// descriptors it holds (reads, writes, socket messages, eventfds, io_uring for disks), Unix
    /// sockets to reach the root, signals to itself, and opening files (which Landlock confines).
    /// Everything else fails with EPERM: exec, fork, ptrace and process_vm_*, signals to other
    /// processes, sockets other than Unix ones, mounts, namespaces, BPF, keyrings, module loading,
    /// credentials and TIOCSTI on a terminal among them.
    public static func parentPartition(processID: pid_t = getpid()) -> SeccompFilter {
        let pid = UInt64(UInt32(bitPattern: processID))
        var rules: [Rule] = [
            // Descriptors it holds.
            "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
            "lseek", "close", "dup", "dup3", "fstat", "newfstatat", "statx", "fstatfs", "fsync",
            "fdatasync", "sync_file_range", "fallocate", "ftruncate", "flock",
            "sendmsg", "recvmsg", "recvfrom", "recvmmsg", "shutdown", "getsockopt",
            "setsockopt", "getsockname", "getpeername", "connect",
            "io_uring_setup", "io_uring_enter", "io_uring_register",
            // Waiting and events.
            "poll", "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
            "epoll_pwait2", "eventfd2", "timerfd_create", "timerfd_settime", "timerfd_gettime", "signalfd4", "pipe2",
            "futex", "futex_waitv", "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday",
            "sched_yield", "sched_getaffinity", "restart_syscall",
            // Memory and threads.
            "mmap", "munmap", "mprotect", "madvise", "mremap", "brk", "msync", "membarrier", "memfd_create",
            "set_robust_list", "get_robust_list", "rseq", "set_tid_address", "exit", "exit_group",
            // Signals (to itself: see kill and tgkill below).
            "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "sigaltstack",
            // Who and where it is.
            "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid",
            "getgroups", "getrandom", "uname", "sysinfo", "getrusage", "getcwd", "getpriority", "capget",
            // Files: Landlock decides which paths open.
            "openat", "open", "readlink", "readlinkat", "access", "faccessat", "faccessat2", "getdents64",
            "arch_prctl",
        ].map { Rule.allow($0) }
        // fcntl, but never F_SETOWN, F_SETOWN_EX or F_SETSIG: with O_ASYNC they make the kernel
        // signal a process of the parent's user (sigio_perm), the root itself where it runs as that
        // user. Each command is matched on the low 32 bits the kernel reads, whatever the
        // register's upper half holds.
        rules += Self.parentFcntlCommands.map { Rule.allow("fcntl", .argument(1, masked: 0xFFFF_FFFF, equals: $0)) }
        rules += [
            // send(2) (sendto with no address): the parent sends only on sockets connected
            // already. The root hands it no packet socket (whose sendto or sendmsg could name
            // any host interface): an external switch's uplink reaches it as a TAP.
            .allow("sendto", .argument(4, equals: 0)),
            // Unix sockets only: the root's control socket, socket pairs.
            .allow("socket", .argument(0, equals: UInt64(AF_UNIX))),
            .allow("socketpair", .argument(0, equals: UInt64(AF_UNIX))),
            // Threads, never processes; glibc falls back from clone3 (whose flags a filter cannot see).
            .allow("clone", .argument(0, masked: UInt64(CPRIV_CLONE_THREAD), equals: UInt64(CPRIV_CLONE_THREAD))),
            .fail("clone3", with: ENOSYS),
            // Signals to its own threads only.
            .allow("kill", .argument(0, equals: pid)),
            .allow("tgkill", .argument(0, equals: pid)),
            // Its own scheduling priority (Dispatch's QoS) and resource limits, read only.
            .allow("setpriority", .argument(0, equals: UInt64(PRIO_PROCESS.rawValue)), .argument(1, equals: 0)),
            .allow("prlimit64", .argument(0, equals: 0), .argument(2, equals: 0)),
        ]
        // prctl: thread names and reading its own state; never CPRIV_PR_SET_DUMPABLE, PR_SET_SECCOMP …
        for option in [CPRIV_PR_SET_NAME, CPRIV_PR_GET_NAME, CPRIV_PR_GET_SECCOMP, CPRIV_PR_GET_NO_NEW_PRIVS,
                       CPRIV_PR_GET_DUMPABLE, CPRIV_PR_CAPBSET_READ, CPRIV_PR_SET_VMA] {
            rules.append(.allow("prctl", .argument(0, equals: UInt64(option))))
        }
        // ioctl: only the requests the parent's devices make on descriptors they hold, each
        // compared on its low 32 bits (the kernel's `unsigned int cmd` ignores the rest). Not
        // among them: a terminal's TIOCSTI, which pushes input into the terminal.
        for request in parentIoctlRequests {
            rules.append(.allow("ioctl", .argument(1, masked: 0xFFFF_FFFF, equals: UInt64(request))))
        }
        return SeccompFilter(rules: rules)
    }

    /// The ioctl requests the parent may make: a device that needs another adds it here.
    public static let parentIoctlRequests: [UInt32] = [
        0x5401,                                  // TCGETS (isatty(3) of its standard streams)
        0x5413,                                  // TIOCGWINSZ
        0x541B,                                  // FIONREAD
        0x5421,                                  // FIONBIO
        0x5450, 0x5451,                          // FIONCLEX, FIOCLEX
        0x8004_54CF,                             // TUNGETFEATURES
        0x8004_54D2,                             // TUNGETIFF
        0x4004_54D0,                             // TUNSETOFFLOAD
        0x4004_54D4,                             // TUNSETSNDBUF
        0x8004_54D7, 0x4004_54D8,                // TUNGETVNETHDRSZ, TUNSETVNETHDRSZ
        0x1260, 0x8008_1272,                     // BLKGETSIZE, BLKGETSIZE64
        0x1268, 0x127B,                          // BLKSSZGET, BLKPBSZGET
        0x1261, 0x1277, 0x127F,                  // BLKFLSBUF, BLKDISCARD, BLKZEROOUT
    ]
}
