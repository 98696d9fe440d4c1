import Glibc
import LinuxSupport
import SystemPackage

/// A Unix user: the account the parent partition runs as, or a caller of the management API.
public struct UserIdentity: Hashable, Sendable, CustomStringConvertible {
    public var uid: uid_t
    /// The primary group; changing it forgets the groups `resolvingGroups()` found.
    public var gid: gid_t { didSet { resolvedGroups = nil } }
    /// The account name, when the user database has one; changing it forgets the groups
    /// `resolvingGroups()` found.
    public var name: String? { didSet { resolvedGroups = nil } }
    /// The groups `resolvingGroups()` found for this name and primary group, so `groups` need
    /// not ask the group database again.
    public private(set) var resolvedGroups: [gid_t]?

    public init(uid: uid_t, gid: gid_t, name: String? = nil) {
        self.uid = uid
        self.gid = gid
        self.name = name
    }

    /// Users are the same user whether or not their groups have been looked up.
    public static func == (lhs: UserIdentity, rhs: UserIdentity) -> Bool {
        lhs.uid == rhs.uid && lhs.gid == rhs.gid && lhs.name == rhs.name
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(uid)
        hasher.combine(gid)
        hasher.combine(name)
    }

    /// The effective user and group of this process.
    public static var current: UserIdentity {
        UserIdentity(uid: geteuid(), gid: getegid(), name: accountName(of: geteuid()))
    }

    /// The conventional `nobody` of Linux distributions, for hosts without a user database.
    public static let overflow = UserIdentity(uid: 65534, gid: 65534, name: nil)

    /// The account a sandboxed parent partition runs as by default: when this process is root,
    /// `hv-parent` if the user database has it (a dedicated account: `useradd --system hv-parent`),
    /// else `nobody`, else 65534:65534; otherwise the current user (an unprivileged user cannot
    /// switch, and the rest of the sandbox still applies).
    public static var defaultParent: UserIdentity {
        guard geteuid() == 0 else { return current }
        for name in ["hv-parent", "nobody"] {
            if let user = lookup(name: name) { return user }
        }
        return overflow
    }

    /// Resolves `text`: an account name, a UID (its group from the user database, else the same
    /// number) or `UID:GID`.
    public static func resolve(_ text: String) throws(PrivilegeError) -> UserIdentity {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count == 2, let uid = uid_t(parts[0]), let gid = gid_t(parts[1]), uid != uid_t.max, gid != gid_t.max {
            return UserIdentity(uid: uid, gid: gid, name: accountName(of: uid))
        }
        if parts.count == 1, let uid = uid_t(text), uid != uid_t.max {
            return lookup(uid: uid) ?? UserIdentity(uid: uid, gid: gid_t(uid), name: nil)
        }
        guard parts.count == 1, !text.isEmpty, let user = lookup(name: text) else { throw .unknownUser(text) }
        return user
    }

    /// The user database's entry for `name`.
    public static func lookup(name: String) -> UserIdentity? {
        withPasswordEntry { entry, buffer, result in getpwnam_r(name, &entry, buffer, 16 << 10, &result) }
    }

    /// The user database's entry for `uid`; `nil` also when the database fails (`find(uid:)`
    /// tells the two apart).
    public static func lookup(uid: uid_t) -> UserIdentity? {
        (try? find(uid: uid)) ?? nil
    }

    /// The user database's entry for `uid`, `nil` if it has none, telling a failure of the
    /// database (getpwuid_r's error other than those getpwnam(3) lists for "not found") from an
    /// answer.
    public static func find(uid: uid_t) throws(SystemError) -> UserIdentity? {
        var failure: Int32 = 0
        let user = withPasswordEntry { entry, buffer, result in
            failure = getpwuid_r(uid, &entry, buffer, 16 << 10, &result)
            return failure
        }
        guard user == nil, ![0, ENOENT, ESRCH, EBADF, EPERM].contains(failure) else { return user }
        throw SystemError("look up uid \(uid) in the user database", errno: Errno(rawValue: failure))
    }

    private static func accountName(of uid: uid_t) -> String? { lookup(uid: uid)?.name }

    private static func withPasswordEntry(
        _ call: (inout passwd, UnsafeMutablePointer<CChar>, inout UnsafeMutablePointer<passwd>?) -> Int32
    ) -> UserIdentity? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        // 16 KiB: the size the calls above are told (sysconf(_SC_GETPW_R_SIZE_MAX) is 1 KiB on glibc).
        var storage = [CChar](repeating: 0, count: 16 << 10)
        // SAFETY: getpw*_r writes the entry's strings into `storage` (its size is what the calls are
        // given) and `entry` points into it; the name is copied out before the buffer goes.
        return storage.withUnsafeMutableBufferPointer { buffer -> UserIdentity? in
            guard let base = buffer.baseAddress, call(&entry, base, &result) == 0, result != nil,
                  let name = entry.pw_name else { return nil }
            return UserIdentity(uid: entry.pw_uid, gid: entry.pw_gid, name: String(cString: name))
        }
    }

    /// The user's supplementary groups from the group database (getgrouplist(3)), its primary
    /// group first; just the primary group when it has no account name. Asks the group database
    /// unless `resolvingGroups()` already did.
    public var groups: [gid_t] { resolvedGroups ?? lookUpGroups() }

    /// This user with `groups` looked up now and kept.
    public func resolvingGroups() -> UserIdentity {
        var user = self
        user.resolvedGroups = lookUpGroups()
        return user
    }

    private func lookUpGroups() -> [gid_t] {
        guard let name else { return [gid] }
        var count: Int32 = 64
        while true {
            var list = [gid_t](repeating: 0, count: Int(count))
            var found = count
            if getgrouplist(name, gid, &list, &found) >= 0 { return Array(list.prefix(Int(found))) }
            guard found > count, found <= 65536 else { return [gid] }
            count = found
        }
    }

    public var description: String {
        if let name { return "\(name) (\(uid):\(gid))" }
        return "\(uid):\(gid)"
    }
}
