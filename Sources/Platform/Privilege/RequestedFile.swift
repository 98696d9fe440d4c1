import CPrivilege
import Glibc

/// Files the root opens on a user's behalf.
public enum RequestedFile {
    /// open(2) of `path` with `flags` (no O_CREAT), refusing with ELOOP to follow a procfs
    /// magic link anywhere on the path (`/proc/self/fd/N`, `/proc/self/cwd`, `/proc/<pid>/root`,
    /// or a symbolic link to one). Such a link leads to the calling process's own open files
    /// whatever the file-system identity of the thread that follows it: another partition's
    /// RAM, say. Where the kernel has no openat2 (before Linux 5.6), a plain open.
    /// - Returns: the descriptor, or -1 with `errno` set.
    public static func open(_ path: String, flags: Int32) -> Int32 {
        let fd = cpriv_open_without_magic_links(path, flags)
        if fd < 0, errno == ENOSYS { return Glibc.open(path, flags) }
        return fd
    }
}
