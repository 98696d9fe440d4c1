/// Something on the host a device needs, such as a disk's image file or a network's TAP device.
/// The root, the privileged side, opens it (checking the requester's right to it) and hands the
/// parent the descriptor, so the sandboxed parent needs no rights to the host's file system or
/// network of its own (Docs/security.md).
public enum HostResource: Hashable, Sendable, CustomStringConvertible {
    /// A regular file or block device, opened for reading (and writing if `writable`).
    case file(path: String, writable: Bool)
    /// The TAP interface `name` (created if missing), opened with IFF_TAP | IFF_NO_PI |
    /// IFF_VNET_HDR; needs CAP_NET_ADMIN, so only root (or the root scheduler's user) may name one.
    case tap(name: String)

    public var description: String {
        switch self {
        case .file(let path, let writable): "\(path) (\(writable ? "read-write" : "read-only"))"
        case .tap(let name): "TAP \(name)"
        }
    }
}
