import LinuxSupport

/// Why a privilege operation (a sandbox step, acting for a caller, securing a directory) failed.
public enum PrivilegeError: Error, Equatable, CustomStringConvertible {
    /// A system call failed.
    case system(SystemError)
    /// No such user or group in the user database, and not a number either.
    case unknownUser(String)
    /// A protection the operation needs is not available here (the sentence names the fix).
    case unavailable(String)
    /// The operation was refused because it would be unsafe (the sentence says why).
    case refused(String)

    public var description: String {
        switch self {
        case .system(let error): "\(error)"
        case .unknownUser(let name): "No user named \(name): give a user name, a UID or UID:GID."
        case .unavailable(let reason), .refused(let reason): reason
        }
    }
}
