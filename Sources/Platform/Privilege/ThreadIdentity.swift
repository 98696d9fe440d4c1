import CPrivilege
import Glibc
import LinuxSupport
import Synchronization

/// Work done with another user's rights, on a thread of its own: Linux keeps credentials per
/// thread (credentials(7)), and the raw system calls used here change only the calling thread's,
/// unlike glibc's wrappers, which change every thread of the process. The thread ends with the
/// work, and its credentials with it.
public enum ThreadIdentity {
    /// Runs `body` with `user`'s file-system identity — fsuid, fsgid and supplementary groups
    /// (setfsuid(2)) — so the kernel checks every path `body` opens against that user's rights,
    /// as it would for the user's own process (path_resolution(7)); a root process also loses
    /// CAP_DAC_OVERRIDE and the other file capabilities on that thread. When `user` is this
    /// process's effective user, `body` runs on the calling thread, which has those rights.
    /// - Throws: `.unavailable` when this process cannot take `user`'s identity (it lacks
    ///   CAP_SETUID and CAP_SETGID).
    public static func withFileSystemIdentity<Result: Sendable>(
        of user: UserIdentity, _ body: @escaping @Sendable () -> Result
    ) throws(PrivilegeError) -> Result {
        if user.uid == geteuid() { return body() }
        let groups = user.groups
        return try onThread(named: "as-\(user.uid)") { () -> Result? in
            // SAFETY: setgroups(2) reads `count` IDs from the buffer during the call.
            let switched = groups.withUnsafeBufferPointer { cpriv_thread_setgroups($0.count, $0.baseAddress) } == 0
            _ = cpriv_thread_setfsgid(user.gid)
            _ = cpriv_thread_setfsuid(user.uid)
            // setfsuid(2) cannot report failure: read the values back (an invalid ID changes nothing).
            guard switched, cpriv_thread_setfsuid(uid_t.max) == Int32(bitPattern: user.uid),
                  cpriv_thread_setfsgid(gid_t.max) == Int32(bitPattern: user.gid) else { return nil }
            return body()
        }
    }

    /// Runs `body` on a thread that is `user` — real, effective and saved user and group, no
    /// supplementary groups, hence no capabilities: what a process of that user could do.
    public static func asUser<Result: Sendable>(_ user: UserIdentity, _ body: @escaping @Sendable () -> Result)
        throws(PrivilegeError) -> Result
    {
        try onThread(named: "user-\(user.uid)") { () -> Result? in
            guard cpriv_thread_setgroups(0, nil) == 0 || user.uid == geteuid(),
                  cpriv_thread_setresgid(user.gid) == 0, cpriv_thread_setresuid(user.uid) == 0 else { return nil }
            return body()
        }
    }

    private static func onThread<Result: Sendable>(named name: String, _ body: @escaping @Sendable () -> Result?)
        throws(PrivilegeError) -> Result
    {
        let outcome = Mutex<Result?>(nil)
        let thread: OSThread
        do throws(SystemError) {
            thread = try OSThread.spawn(name: name) {
                let value = body()
                outcome.withLock { $0 = value }
            }
        } catch {
            throw .system(error)
        }
        thread.join()
        guard let value = outcome.withLock({ $0.take() }) else {
            throw .unavailable("This process (uid \(geteuid())) cannot act with the rights of another user: it lacks "
                               + "CAP_SETUID and CAP_SETGID.")
        }
        return value
    }
}
