import CLinux
import Glibc
import SystemPackage

/// An AF_PACKET raw socket bound to one interface (`packet(7)`): every frame the interface
/// receives is read here, and frames written here leave through the interface.
public enum PacketSocket {
    /// Opens a non-blocking packet socket on `interface`.
    /// - Parameters:
    ///   - promiscuous: also receive frames not addressed to the interface's MAC.
    ///   - virtioHeader: frames carry a virtio-net header (PACKET_VNET_HDR), so checksum and
    ///     segmentation offloads cross the socket.
    ///   - ignoreOutgoing: do not read back frames this host sends on the interface
    ///     (PACKET_IGNORE_OUTGOING).
    public static func open(interface: String, promiscuous: Bool, virtioHeader: Bool, ignoreOutgoing: Bool = true)
        throws(SystemError) -> OwnedDescriptor
    {
        let raw = clinux_packet_socket()
        guard raw >= 0 else { throw SystemError.current("open AF_PACKET socket for \(interface)") }
        let descriptor = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
        let index = try NetworkInterface.index(of: interface, using: descriptor)
        _ = try retryingOnInterrupt("bind AF_PACKET socket to \(interface)") { clinux_packet_bind(raw, index) }
        if virtioHeader {
            _ = try retryingOnInterrupt("PACKET_VNET_HDR on \(interface)") {
                clinux_packet_set_option(raw, CLINUX_PACKET_VNET_HDR, 1)
            }
        }
        if ignoreOutgoing {
            _ = try retryingOnInterrupt("PACKET_IGNORE_OUTGOING on \(interface)") {
                clinux_packet_set_option(raw, CLINUX_PACKET_IGNORE_OUTGOING, 1)
            }
        }
        if promiscuous {
            _ = try retryingOnInterrupt("PACKET_MR_PROMISC on \(interface)") { clinux_packet_promiscuous(raw, index) }
        }
        return descriptor
    }

    /// Keeps `interface` promiscuous for as long as the returned socket is open (the kernel
    /// counts each holder, and drops this one when the descriptor closes, however the process
    /// ends). The socket is bound to no protocol, so it is handed no frame.
    public static func holdPromiscuous(interface: String) throws(SystemError) -> OwnedDescriptor {
        let raw = clinux_packet_socket_receiving_nothing()
        guard raw >= 0 else { throw SystemError.current("open AF_PACKET socket to hold \(interface) promiscuous") }
        let descriptor = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
        let index = try NetworkInterface.index(of: interface, using: descriptor)
        _ = try retryingOnInterrupt("PACKET_MR_PROMISC on \(interface)") { clinux_packet_promiscuous(raw, index) }
        return descriptor
    }
}

/// Network interfaces of the calling thread's network namespace.
public enum NetworkInterface {
    /// A datagram socket for interface ioctls in the calling thread's namespace.
    public static func controlSocket() throws(SystemError) -> OwnedDescriptor {
        let raw = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard raw >= 0 else { throw SystemError.current("open interface control socket") }
        return OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
    }

    /// The index of `name`, asked through `socket` (any socket of the interface's namespace).
    public static func index(of name: String, using socket: OwnedDescriptor) throws(SystemError) -> Int32 {
        try retryingOnInterrupt("SIOCGIFINDEX \(name)") { clinux_interface_index(socket.rawValue, name) }
    }

    /// Sets the MTU of `name`, through `socket` (any socket of its namespace).
    public static func setMTU(_ name: String, _ mtu: Int, using socket: OwnedDescriptor) throws(SystemError) {
        _ = try retryingOnInterrupt("set the MTU of \(name) to \(mtu)") {
            clinux_interface_set_mtu(socket.rawValue, name, Int32(clamping: mtu))
        }
    }

    /// Gives `name` the IPv4 address `address` (host byte order, e.g. 0x0A00_0001 for 10.0.0.1)
    /// with a `prefix`-bit netmask, through `socket` (an AF_INET socket of its namespace).
    public static func setIPv4Address(_ name: String, _ address: UInt32, prefix: Int, using socket: OwnedDescriptor)
        throws(SystemError)
    {
        _ = try retryingOnInterrupt("set the IPv4 address of \(name)") {
            clinux_interface_set_ipv4(socket.rawValue, name, address, Int32(clamping: prefix))
        }
    }

    /// Sets or clears IFF_UP on `name`, through `socket` (any socket of its namespace).
    public static func setUp(_ name: String, _ up: Bool, using socket: OwnedDescriptor) throws(SystemError) {
        _ = try retryingOnInterrupt("set \(name) \(up ? "up" : "down")") {
            clinux_interface_set_up(socket.rawValue, name, up ? 1 : 0)
        }
    }
}

/// Network namespaces (`network_namespaces(7)`).
public enum NetworkNamespace {
    /// Moves the calling thread into a new, empty network namespace (needs CAP_SYS_ADMIN).
    /// Sockets and TAP devices it then creates belong to that namespace and keep it alive.
    public static func unshareCurrentThread() throws(SystemError) {
        _ = try retryingOnInterrupt("unshare(CLONE_NEWNET)") { clinux_unshare_network_namespace() }
    }

    /// Moves the calling thread into the network namespace at `path` (e.g. /run/netns/NAME, as
    /// `ip netns add` makes them); needs CAP_SYS_ADMIN. Sockets it then creates belong there.
    public static func enter(path: String) throws(SystemError) {
        let raw = try retryingOnInterrupt("open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
        let descriptor = OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
        _ = try retryingOnInterrupt("setns(\(path))") { clinux_setns_network(descriptor.rawValue) }
    }
}
