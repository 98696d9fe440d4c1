import CPrivilege
import Glibc

/// Files the root opens on a user's behalf.
public enum RequestedFile {
    /// open(2) of `path` with `flags` (no O_CREAT), refusing with ELOOP to follow a procfs
    /// magic link anywhere on the path (`/proc/self/fd/N`, `/proc/self/cwd`, `/proc/<pid>/root`,
    /// or a symbolic link to one). Such a link leads to the calling process's own open files
    /// whatever the file-system identity of the thread that follows it: another partition's
    /// RAM, say. Where openat2 cannot be used (a kernel before Linux 5.6, or a seccomp profile
    /// that refuses system calls it does not know), a plain open: `isGuarded` says which.
    /// - Returns: the descriptor, or -1 with `errno` set.
    public static func open(_ path: String, flags: Int32) -> Int32 {
        isGuarded ? cpriv_open_without_magic_links(path, flags) : Glibc.open(path, flags)
    }

    /// Whether `open` refuses magic links here: openat2 opens "/" (asked once).
    public static let isGuarded: Bool = {
        let fd = cpriv_open_without_magic_links("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { close(fd) }
        return fd >= 0
    }()
}
