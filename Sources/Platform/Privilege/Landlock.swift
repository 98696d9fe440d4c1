import CPrivilege
import Glibc
import LinuxSupport

/// Landlock (Documentation/userspace-api/landlock.rst): an unprivileged process restricts what
/// it, and every thread and process it starts later, can do with the file system, TCP ports,
/// signals and abstract Unix sockets, whatever its user may do. Restrictions stack and cannot be
/// lifted. Rights on descriptors opened before (or by another process, and then handed over) are
/// not affected, which is what lets the parent keep using what the root hands it.
public enum Landlock {
    /// The ABI version the kernel implements, or nil without Landlock (not built, or not among
    /// the active LSMs).
    public static var abiVersion: Int? {
        let version = cpriv_landlock_create_ruleset(nil, 0, 1)
        return version > 0 ? Int(version) : nil
    }

    /// File-system rights by the ABI that introduced them.
    static func fileSystemRights(abi: Int) -> UInt64 {
        var rights: UInt64 = (1 << 13) - 1          // ABI 1: execute … make_sym
        if abi >= 2 { rights |= 1 << 13 }            // REFER
        if abi >= 3 { rights |= 1 << 14 }            // TRUNCATE
        if abi >= 5 { rights |= 1 << 15 }            // IOCTL_DEV
        return rights
    }

    /// LANDLOCK_ACCESS_FS_EXECUTE | READ_FILE | READ_DIR.
    static let readAndExecute: UInt64 = 1 << 0 | 1 << 2 | 1 << 3

    /// What `restrictSelf` could enforce on this kernel.
    public struct Enforcement: Sendable, Equatable {
        public var abi: Int
        /// TCP bind and connect denied (ABI 4).
        public var network: Bool
        /// Signals and abstract Unix sockets limited to the sandbox (ABI 6).
        public var scoped: Bool
    }

    /// Restricts the calling thread (and what it starts from now on) to reading and executing
    /// files beneath `readable`, no TCP, and — where the kernel can — no signals to, and no
    /// abstract Unix sockets of, processes outside the sandbox. Needs no_new_privs set first.
    /// - Returns: nil when the kernel has no Landlock.
    public static func restrictSelf(readable: [String]) throws(PrivilegeError) -> Enforcement? {
        guard let abi = abiVersion else { return nil }
        var attributes = cpriv_landlock_ruleset_attr()
        attributes.handled_access_fs = fileSystemRights(abi: abi)
        var size = MemoryLayout<UInt64>.size
        if abi >= 4 {
            attributes.handled_access_net = 1 << 0 | 1 << 1  // BIND_TCP | CONNECT_TCP
            size += MemoryLayout<UInt64>.size
        }
        if abi >= 6 {
            attributes.scoped = 1 << 0 | 1 << 1  // ABSTRACT_UNIX_SOCKET | SIGNAL
            size += MemoryLayout<UInt64>.size
        }
        let ruleset = cpriv_landlock_create_ruleset(&attributes, size, 0)
        guard ruleset >= 0 else { throw .system(.current("create a Landlock ruleset")) }
        defer { close(ruleset) }
        for path in readable {
            let directory = open(path, CPRIV_O_PATH | O_CLOEXEC | O_DIRECTORY)
            guard directory >= 0 else { continue }
            defer { close(directory) }
            guard cpriv_landlock_add_path_rule(ruleset, readAndExecute & attributes.handled_access_fs, directory) == 0 else {
                throw .system(.current("allow reading \(path) in the Landlock ruleset"))
            }
        }
        guard cpriv_landlock_restrict_self(ruleset) == 0 else { throw .system(.current("enforce the Landlock ruleset")) }
        return Enforcement(abi: abi, network: abi >= 4, scoped: abi >= 6)
    }
}
