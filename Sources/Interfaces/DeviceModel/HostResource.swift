/// Something on the host a device needs, such as a disk's image file. The root, the privileged
/// side, opens it and hands the parent the descriptor, so the parent needs no rights to the
/// host's filesystem of its own.
public enum HostResource: Hashable, Sendable, CustomStringConvertible {
    /// A regular file or block device, opened for reading (and writing if `writable`).
    case file(path: String, writable: Bool)

    public var description: String {
        switch self {
        case .file(let path, let writable): "\(path) (\(writable ? "read-write" : "read-only"))"
        }
    }
}
