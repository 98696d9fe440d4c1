// Linux networking interfaces the Glibc module does not import in a usable form: the TUN/TAP
// ioctls (struct ifreq and the _IOW request numbers are macros), interface flags, AF_PACKET
// socket options, and unshare(CLONE_NEWNET). Each helper does one system call, unchanged in
// meaning; the Swift wrappers in LinuxSupport give them types and errors.
#ifndef CLINUX_NET_H
#define CLINUX_NET_H

#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static const unsigned int CLINUX_TUN_F_CSUM = TUN_F_CSUM;
static const unsigned int CLINUX_TUN_F_TSO4 = TUN_F_TSO4;
static const unsigned int CLINUX_TUN_F_TSO6 = TUN_F_TSO6;
static const int CLINUX_IFNAMSIZ = IFNAMSIZ;

/// TUNSETIFF with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR for `name` ("" lets the kernel choose);
/// the kernel's name for the interface is copied to `actual` (IFNAMSIZ bytes).
static inline int clinux_tun_attach_tap(int fd, const char *name, char *actual) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (ioctl(fd, TUNSETIFF, &request) < 0) return -1;
    memcpy(actual, request.ifr_name, IFNAMSIZ);
    return 0;
}

/// TUNSETOFFLOAD: the offloads (TUN_F_*) the reader of this TAP accepts.
static inline int clinux_tun_set_offload(int fd, unsigned int flags) {
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags);
}

/// TUNSETVNETHDRSZ.
static inline int clinux_tun_set_vnet_header_size(int fd, int size) {
    return ioctl(fd, TUNSETVNETHDRSZ, &size);
}

/// SIOCGIFFLAGS then SIOCSIFFLAGS with IFF_UP set or cleared, through any socket of the
/// interface's network namespace.
static inline int clinux_interface_set_up(int socket_fd, const char *name, int up) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(socket_fd, SIOCGIFFLAGS, &request) < 0) return -1;
    if (up) request.ifr_flags |= IFF_UP; else request.ifr_flags &= ~IFF_UP;
    return ioctl(socket_fd, SIOCSIFFLAGS, &request);
}

/// SIOCSIFMTU: sets the MTU of `name`, through any socket of the interface's network namespace.
static inline int clinux_interface_set_mtu(int socket_fd, const char *name, int mtu) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_mtu = mtu;
    return ioctl(socket_fd, SIOCSIFMTU, &request);
}

/// SIOCSIFADDR then SIOCSIFNETMASK: gives `name` the IPv4 address `address` with `prefix` bits
/// of netmask (both in host byte order), through any AF_INET socket of its namespace.
static inline int clinux_interface_set_ipv4(int socket_fd, const char *name, unsigned int address, int prefix) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    struct sockaddr_in *in = (struct sockaddr_in *)&request.ifr_addr;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(address);
    if (ioctl(socket_fd, SIOCSIFADDR, &request) < 0) return -1;
    in->sin_addr.s_addr = htonl(prefix == 0 ? 0 : 0xFFFFFFFFu << (32 - prefix));
    return ioctl(socket_fd, SIOCSIFNETMASK, &request);
}

/// SIOCGIFINDEX through any socket of the interface's network namespace (if_nametoindex
/// opens its own socket, which is fine too, but this one names the namespace explicitly).
static inline int clinux_interface_index(int socket_fd, const char *name) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(socket_fd, SIOCGIFINDEX, &request) < 0) return -1;
    return request.ifr_ifindex;
}

// AF_PACKET (from <linux/if_packet.h>; spelled out so this header needs no second definition
// of struct sockaddr_ll beside glibc's).
static const int CLINUX_SOL_PACKET = 263;
static const int CLINUX_PACKET_ADD_MEMBERSHIP = 1;
static const int CLINUX_PACKET_MR_PROMISC = 1;
static const int CLINUX_PACKET_VNET_HDR = 15;
static const int CLINUX_PACKET_IGNORE_OUTGOING = 23;
static const unsigned short CLINUX_ETH_P_ALL = 0x0003;

struct clinux_sockaddr_ll {
    unsigned short sll_family;
    unsigned short sll_protocol;
    int sll_ifindex;
    unsigned short sll_hatype;
    unsigned char sll_pkttype;
    unsigned char sll_halen;
    unsigned char sll_addr[8];
};

struct clinux_packet_mreq {
    int mr_ifindex;
    unsigned short mr_type;
    unsigned short mr_alen;
    unsigned char mr_address[8];
};

/// A non-blocking, close-on-exec AF_PACKET/SOCK_RAW socket for every protocol.
static inline int clinux_packet_socket(void) {
    return socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(CLINUX_ETH_P_ALL));
}

/// A close-on-exec AF_PACKET/SOCK_RAW socket for no protocol: it is handed no frame, but can
/// still hold an interface's promiscuity (`clinux_packet_promiscuous`).
static inline int clinux_packet_socket_receiving_nothing(void) {
    return socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
}

/// Binds an AF_PACKET socket to interface `ifindex`.
static inline int clinux_packet_bind(int fd, int ifindex) {
    struct clinux_sockaddr_ll address;
    memset(&address, 0, sizeof address);
    address.sll_family = AF_PACKET;
    address.sll_protocol = htons(CLINUX_ETH_P_ALL);
    address.sll_ifindex = ifindex;
    return bind(fd, (const struct sockaddr *)&address, sizeof address);
}

/// Puts interface `ifindex` in promiscuous mode for as long as the socket lives.
static inline int clinux_packet_promiscuous(int fd, int ifindex) {
    struct clinux_packet_mreq request;
    memset(&request, 0, sizeof request);
    request.mr_ifindex = ifindex;
    request.mr_type = CLINUX_PACKET_MR_PROMISC;
    return setsockopt(fd, CLINUX_SOL_PACKET, CLINUX_PACKET_ADD_MEMBERSHIP, &request, sizeof request);
}

/// Sets an integer AF_PACKET option (PACKET_VNET_HDR, PACKET_IGNORE_OUTGOING).
static inline int clinux_packet_set_option(int fd, int option, int value) {
    return setsockopt(fd, CLINUX_SOL_PACKET, option, &value, sizeof value);
}

/// unshare(CLONE_NEWNET): the calling thread moves to a new network namespace.
static inline int clinux_unshare_network_namespace(void) {
    return (int)syscall(SYS_unshare, 0x40000000);
}

/// setns(fd, CLONE_NEWNET): the calling thread moves to the network namespace `fd` names (a
/// /run/netns file or /proc/PID/ns/net).
static inline int clinux_setns_network(int fd) {
    return (int)syscall(SYS_setns, fd, 0x40000000);
}

/// A raw ICMP socket (needs CAP_NET_RAW), close-on-exec.
static inline int clinux_icmp_socket(void) {
    return socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
}

/// Sends `length` bytes to IPv4 `address` (host byte order) on a raw socket.
static inline long clinux_send_ipv4(int fd, const void *bytes, unsigned long length, unsigned int address) {
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(address);
    return sendto(fd, bytes, length, 0, (const struct sockaddr *)&to, sizeof to);
}

#endif
