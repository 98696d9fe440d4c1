import CDiskIO
import CPrivilege
import Glibc
import LinuxSupport
import Synchronization
import SystemPackage

/// What a sandboxed process can and cannot do, tried from inside: the stand-in for code an
/// attacker runs in a compromised parent partition. `hv parent --probe-sandbox` enters the
/// parent's sandbox exactly as `hv parent` does and then runs these; the integration tests
/// check every answer.
public enum SandboxProbe {
    /// One attempt: what was tried, whether the kernel let it happen, and the errno if not.
    public struct Outcome: Codable, Sendable, Equatable, CustomStringConvertible {
        public var attempt: String
        public var allowed: Bool
        public var detail: String

        public var description: String { "\(attempt): \(allowed ? "allowed" : "denied") (\(detail))" }
    }

    /// Tries each operation once.
    /// - Parameters:
    ///   - target: a process outside the sandbox (the root) to signal, trace and read.
    ///   - forbiddenFiles: files the process must not be able to open for reading.
    ///   - socketPath: a listening Unix socket the process must still be able to connect to.
    public static func run(target: pid_t, forbiddenFiles: [String], socketPath: String?) -> [Outcome] {
        var outcomes: [Outcome] = []
        func record(_ attempt: String, _ result: Int) {
            outcomes.append(Outcome(attempt: attempt, allowed: result >= 0,
                                    detail: result >= 0 ? "ok" : "\(Errno.current) (errno \(Errno.current.rawValue))"))
        }
        func tryOpen(_ path: String, _ flags: Int32) -> Int {
            let fd = open(path, flags | O_CLOEXEC | O_NONBLOCK)
            if fd >= 0 { close(fd) }
            return Int(fd)
        }

        record("open /dev/kvm", tryOpen("/dev/kvm", O_RDWR))
        for path in forbiddenFiles { record("open \(path)", tryOpen(path, O_RDONLY)) }
        record("list /", tryOpen("/", O_RDONLY | O_DIRECTORY))
        record("create /tmp/hv-sandbox-probe", tryOpen("/tmp/hv-sandbox-probe-\(getpid())", O_WRONLY | O_CREAT))
        record("open /proc/\(target)/mem", tryOpen("/proc/\(target)/mem", O_RDONLY))
        record("signal process \(target)", Int(kill(target, 0)))
        record("ptrace process \(target)", cpriv_ptrace_attach(target))
        var byte: UInt8 = 0
        record("read the memory of process \(target)", cpriv_process_vm_read(target, &byte, 1, 0x40_0000))
        record("TCP socket", closing(socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)))
        record("UDP socket", closing(socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)))
        record("netlink socket", closing(socket(AF_NETLINK, Int32(SOCK_RAW.rawValue), 0)))
        record("execute a program", Int(execve("/nonexistent-hv-sandbox-probe", [nil], [nil])))
        let child = fork()
        if child == 0 { _exit(0) }
        if child > 0 { waitpid(child, nil, 0) }
        record("fork", Int(child))
        record("become root", Int(setuid(0)))
        record("new user namespace", Int(cpriv_unshare(CPRIV_CLONE_NEWUSER)))
        record("make the process dumpable again", Int(cpriv_prctl(CPRIV_PR_SET_DUMPABLE, 1, 0, 0, 0)))
        record("push input into a terminal (TIOCSTI)", Int(cpriv_ioctl_tiocsti(2)))
        var pipe = [Int32](repeating: -1, count: 2)
        if Glibc.pipe(&pipe) == 0 {
            // With O_ASYNC, either makes the kernel signal another process on I/O.
            record("have process \(target) signalled on I/O (F_SETOWN)", Int(fcntl(pipe[0], F_SETOWN, target)))
            record("choose the signal sent on I/O (F_SETSIG)", Int(fcntl(pipe[0], 10 /* F_SETSIG */, SIGKILL)))
            record("make a descriptor non-blocking (F_SETFL)", Int(fcntl(pipe[0], F_SETFL, O_NONBLOCK)))
            close(pipe[0])
            close(pipe[1])
        }

        // What the parent needs.
        if let socketPath {
            let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var result = -1
            if fd >= 0 {
                var address = sockaddr_un()
                address.sun_family = sa_family_t(AF_UNIX)
                // SAFETY: the copy is cut to sun_path's size less its NUL; the address outlives connect,
                // and sockaddr_un is layout-compatible with the sockaddr prefix connect reads.
                withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: socketPath.utf8.prefix($0.count - 1)) }
                result = withUnsafePointer(to: &address) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        Int(connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)))
                    }
                }
                close(fd)
            }
            record("connect to \(socketPath)", result)
        }
        do {
            let memory = try MemoryFile.create(name: "probe", size: 1 << 16)
            let mapping = mmap(nil, 1 << 16, PROT_READ | PROT_WRITE, MAP_SHARED, memory.rawValue, 0)
            record("map shared memory", mapping == MAP_FAILED ? -1 : 0)
            if mapping != MAP_FAILED { munmap(mapping, 1 << 16) }
        } catch {
            record("map shared memory", -1)
        }
        do {
            let event = try EventFD()
            event.signal()
            record("signal an eventfd", 0)
        } catch {
            record("signal an eventfd", -1)
        }
        let ran = Atomic<Bool>(false)
        if let thread = try? OSThread.spawn(name: "probe", { ran.store(true, ordering: .releasing) }) {
            thread.join()
        }
        record("start a thread", ran.load(ordering: .acquiring) ? 0 : -1)
        // A disk queue's io_uring (made as DiskBackend makes it): io_uring runs operations past
        // the seccomp filter, so the ring itself only takes what a disk needs.
        record("read through a disk io_uring", ringAttempt(nop: false))
        record("io_uring operation outside the disk set (NOP)", ringAttempt(nop: true))
        record("register a file with an enabled io_uring", registrationAttempt())
        record("seccomp filter in force", cpriv_prctl(CPRIV_PR_GET_SECCOMP, 0, 0, 0, 0) == 2 ? 0 : -1)
        record("no_new_privs set", cpriv_prctl(CPRIV_PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ? 0 : -1)
        var capabilities: UInt64 = .max
        record("no capabilities", cpriv_effective_capabilities(&capabilities) == 0 && capabilities == 0 ? 0 : -1)
        return outcomes
    }

    /// One operation through a fresh restricted ring: a READV of a memfd, or a NOP. Bytes or
    /// 0 when it ran; −1 with errno set when the ring or the operation was refused.
    private static func ringAttempt(nop: Bool) -> Int {
        let ring = UnsafeMutablePointer<cdiskio_ring>.allocate(capacity: 1)
        defer { ring.deallocate() }
        func failed(_ result: Int32) -> Int {
            errno = -result
            return -1
        }
        var result = cdiskio_ring_init(ring, 4, 0)
        guard result == 0 else { return failed(result) }
        defer { cdiskio_ring_destroy(ring) }
        result = cdiskio_ring_enable(ring)
        guard result == 0 else { return failed(result) }
        var bytes = [UInt8](repeating: 0, count: 64)
        let file: OwnedDescriptor
        do throws(SystemError) {
            file = try MemoryFile.create(name: "probe-ring", size: 4096)
        } catch {
            return failed(-error.errno.rawValue)
        }
        return bytes.withUnsafeMutableBytes { buffer -> Int in
            var vector = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
            // SAFETY: `vector` and `buffer` outlive the operation: the submission below waits
            // for its completion before either goes out of scope.
            let prepared = nop ? cdiskio_ring_prep_nop(ring, 1) : cdiskio_ring_prep_readv(ring, file.rawValue, &vector, 1, 0, 1)
            guard prepared == 0 else { return failed(prepared) }
            let submitted = cdiskio_ring_submit(ring, 1)
            guard submitted >= 0 else { return failed(submitted) }
            var tag: UInt64 = 0
            var outcome: Int32 = 0
            guard cdiskio_ring_next_completion(ring, &tag, &outcome) == 1 else { return failed(-EIO) }
            return outcome < 0 ? failed(outcome) : Int(outcome)
        }
    }

    /// Registers a descriptor with a restricted ring once it is enabled (a frame ring registers
    /// its endpoint before): 0 when the kernel took it, −1 with errno set when it refused.
    private static func registrationAttempt() -> Int {
        let ring = UnsafeMutablePointer<cdiskio_ring>.allocate(capacity: 1)
        defer { ring.deallocate() }
        var result = cdiskio_ring_init(ring, 4, 0)
        if result == 0 {
            defer { cdiskio_ring_destroy(ring) }
            result = cdiskio_ring_enable(ring)
            if result == 0 { result = cdiskio_ring_register_file(ring, STDERR_FILENO) }
        }
        errno = -result
        return result == 0 ? 0 : -1
    }

    private static func closing(_ fd: Int32) -> Int {
        if fd >= 0 { close(fd) }
        return Int(fd)
    }
}
