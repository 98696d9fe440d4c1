import Glibc
import LinuxSupport

/// A directory that holds sockets other processes trust: the root's runtime directory.
///
/// Whoever can write to it (or to its parent, without the sticky bit) can replace `root.sock`
/// and `parent.sock` with sockets of their own and play the root to the parent or to users, so
/// it must belong to the process that serves in it and be writable by no one else.
public enum SecureDirectory {
    /// Creates `path` (mode 0700, or 0711 when `searchable`) unless it exists, then checks it: a
    /// directory, not a symbolic link, owned by this process's effective user, not writable by
    /// its group or others, in a parent directory that others cannot write to (unless it has the
    /// sticky bit, as /tmp has). With `searchable`, others get search permission (0711, which
    /// lets another user reach a socket it is allowed to use, without listing the directory).
    public static func prepare(_ path: String, searchable: Bool) throws(PrivilegeError) {
        let mode: mode_t = searchable ? 0o711 : 0o700
        createAncestors(of: path)
        if mkdir(path, mode) != 0 && errno != EEXIST {
            throw .system(.current("create the runtime directory \(path)"))
        }
        var status = stat()
        guard lstat(path, &status) == 0 else { throw .system(.current("inspect the runtime directory \(path)")) }
        guard status.st_mode & S_IFMT == S_IFDIR else {
            throw .refused("The runtime directory \(path) is not a directory (a symbolic link or another file is in "
                           + "its place): remove it, or choose another with --runtime-dir.")
        }
        guard status.st_uid == geteuid() else {
            throw .refused("The runtime directory \(path) belongs to uid \(status.st_uid), not to this user "
                           + "(uid \(geteuid())), who could not trust the sockets in it: remove it, or choose another "
                           + "with --runtime-dir.")
        }
        guard status.st_mode & 0o022 == 0 else {
            throw .refused("Others can write to the runtime directory \(path) (mode "
                           + "\(String(status.st_mode & 0o7777, radix: 8))) and could replace its sockets: "
                           + "run `chmod go-w \(path)`, or choose another with --runtime-dir.")
        }
        try checkParent(of: path)
        if searchable && status.st_mode & 0o011 != 0o011 {
            guard chmod(path, (status.st_mode & 0o7777) | 0o011) == 0 else {
                throw .system(.current("let other users search \(path)"))
            }
        }
    }

    /// Creates the missing directories above `path` (mode 0755, as `mkdir -p` would).
    private static func createAncestors(of path: String) {
        let components = path.split(separator: "/").dropLast()
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in components {
            prefix += "/" + component
            _ = mkdir(prefix, 0o755)
        }
    }

    /// The directory holding `path` must not let others rename it away (write without sticky bit).
    private static func checkParent(of path: String) throws(PrivilegeError) {
        let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
        guard let slash = trimmed.lastIndex(of: "/") else { return }
        let parent = slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
        var status = stat()
        guard stat(parent, &status) == 0 else { throw .system(.current("inspect \(parent)")) }
        let othersWrite = status.st_mode & 0o022 != 0
        let sticky = status.st_mode & S_ISVTX != 0
        guard !othersWrite || sticky else {
            throw .refused("Others can write to \(parent), which holds the runtime directory, and could replace it: "
                           + "choose a runtime directory in a directory only you (or root) can write to.")
        }
    }
}

/// A Unix socket bound where no one else can reach it yet, given its final mode and owner, then
/// moved into place with rename(2): it never exists at its final path with looser permissions
/// than it is meant to have, whatever the process umask (binding in place and chmod-ing after,
/// the socket is briefly open to everyone the umask lets in).
public struct SocketPublication: Sendable {
    /// The path the socket is published at.
    public let path: String
    /// A directory beside it, mode 0700, that only this process can enter.
    public let stagingDirectory: String

    /// Where to bind the socket before `publish`.
    public var stagingPath: String { stagingDirectory + "/" + (path.split(separator: "/").last.map(String.init) ?? "socket") }

    /// Makes the private staging directory next to `path`.
    public init(path: String) throws(PrivilegeError) {
        self.path = path
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        var template = Array(((directory.isEmpty ? "." : directory) + "/.staging-XXXXXX").utf8CString)
        // SAFETY: mkdtemp rewrites the template's X's in place within its NUL-terminated length.
        let created = template.withUnsafeMutableBufferPointer { buffer in mkdtemp(buffer.baseAddress!) }
        guard created != nil else { throw .system(.current("create a staging directory beside \(path)")) }
        stagingDirectory = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Gives the socket bound at `stagingPath` its `mode` and, if given, `owner` and `group`,
    /// then renames it to `path` (replacing a stale socket) and removes the staging directory.
    /// - Throws: `.refused` for an owner or group of -1, which chown(2) reads as "leave it": a
    ///   group meant to share the socket would then be the process's own.
    public func publish(mode: mode_t, owner: uid_t? = nil, group: gid_t? = nil) throws(PrivilegeError) {
        defer { abandon() }
        guard owner != uid_t.max, group != gid_t.max else {
            throw .refused("\(path) cannot be handed to uid or gid \(uid_t.max), which chown(2) reads as none: name a real user and group.")
        }
        guard chmod(stagingPath, mode) == 0 else { throw .system(.current("set the mode of \(path)")) }
        if owner != nil || group != nil {
            guard chown(stagingPath, owner ?? uid_t.max, group ?? gid_t.max) == 0 else {
                throw .system(.current("hand \(path) to uid \(owner.map { "\($0)" } ?? "-") gid \(group.map { "\($0)" } ?? "-")"))
            }
        }
        guard rename(stagingPath, path) == 0 else { throw .system(.current("publish the socket \(path)")) }
    }

    /// Removes the staging directory and whatever is still in it.
    public func abandon() {
        _ = unlink(stagingPath)
        _ = rmdir(stagingDirectory)
    }
}

extension SequencedPacketSocket {
    /// Listens on `path` with `mode` (and `owner`/`group`, when given) from the first moment a
    /// peer can reach it (see `SocketPublication`).
    public static func listen(path: String, mode: mode_t, owner: uid_t? = nil, group: gid_t? = nil)
        throws(PrivilegeError) -> SequencedPacketSocket
    {
        let publication = try SocketPublication(path: path)
        let socket: SequencedPacketSocket
        do throws(SystemError) {
            socket = try listen(path: publication.stagingPath)
        } catch {
            publication.abandon()
            throw .system(error)
        }
        try publication.publish(mode: mode, owner: owner, group: group)
        return socket
    }
}
