import FuzzSupport
import NetworkProtocol

/// Drives `SoftwareOffload` with frames a hostile guest could send through its NIC: IPv4 and
/// IPv6 TCP frames of every size up to the largest LSO frame the switch takes, header lengths
/// and offsets that lie, and extreme segment sizes, resolved for a guest and for a TAP. A case
/// must not trap, and what it produces must keep the switch's bounds.
public enum SoftwareOffloadFuzzer {
    /// Runs `iterations` cases from `seed`.
    /// - Returns: the promises broken, one line each.
    public static func run(seed: UInt64, iterations: Int) -> [String] {
        var random = FuzzRandom(seed: seed)
        var violations: [String] = []
        for index in 0..<iterations {
            let (frame, offload) = makeCase(&random)
            for capabilities in [SoftwareOffload.Capabilities.guest, .virtio] {
                guard let resolved = SoftwareOffload.resolve(NetworkFrame(bytes: frame, offload: offload), for: capabilities)
                else { continue }
                if resolved.count > SoftwareOffload.maximumSegments {
                    violations.append("case \(index): \(resolved.count) segments from one frame")
                }
                // A frame the switch admitted, plus the tag a destination that takes VLANs
                // inline gets in place of the frame's VLAN metadata.
                let largest = NetworkFrame.largestSegmentedFrameSize + NetworkFrame.vlanTagSize
                for output in resolved where output.bytes.count > largest {
                    violations.append("case \(index): a resolved frame of \(output.bytes.count) bytes")
                }
                if capabilities == .guest, offload.segmentation != nil {
                    for output in resolved where !ipLengthMatches(output.bytes) {
                        violations.append("case \(index): a segment whose IP length is not its size")
                    }
                }
            }
        }
        return violations
    }

    static func makeCase(_ random: inout FuzzRandom) -> ([UInt8], FrameOffload) {
        let isIPv6 = random.chance(1, in: 3)
        let networkHeader = isIPv6 ? 40 : 4 * random.int(5...15)
        let size = random.chance(1, in: 2) ? random.int(0...2000) : random.int(60_000...NetworkFrame.largestSegmentedFrameSize)
        var frame = random.bytes(size)
        if size >= 14 {
            frame[12] = isIPv6 ? 0x86 : 0x08
            frame[13] = isIPv6 ? 0xDD : 0x00
        }
        if size > 14 { frame[14] = isIPv6 ? 0x60 : UInt8(0x40 | networkHeader / 4) }
        let transport = random.chance(1, in: 8) ? random.int(0...2100) : 14 + networkHeader
        if transport + 13 < size, random.chance(3, in: 4) { frame[transport + 12] = UInt8(random.int(5...15)) << 4 }
        let segmentSizes = [0, 1, 63, 64, 100, 255, 536, 1448, 8960, 65535, 0xF_FFFF]
        var offload = FrameOffload()
        if random.chance(2, in: 3) {
            let mss = random.chance(3, in: 4) ? random.pick(segmentSizes) : random.int(0...0xF_FFFF)
            offload.segmentation = .init(maximumSegmentSize: mss, transportOffset: transport, isIPv6: isIPv6)
        }
        if random.chance(1, in: 3) {
            offload.checksum = .init(transport: random.chance(1, in: 2) ? .tcp : .udp, transportOffset: transport, isIPv6: isIPv6,
                                     ipv4Header: random.chance(1, in: 2))
        }
        if random.chance(1, in: 4) { offload.vlan = VLANInfo(rawValue: UInt32(random.int(0...0xFFFF))) }
        return (frame, offload)
    }

    /// Whether an IPv4 frame's total length, or an IPv6 frame's payload length, is what the
    /// frame carries after its Ethernet header.
    static func ipLengthMatches(_ frame: [UInt8]) -> Bool {
        guard let network = EthernetHeaders.network(frame) else { return false }
        switch network.etherType {
        case EthernetHeaders.etherTypeIPv4:
            return EthernetHeaders.u16(frame, network.offset + 2).map { Int($0) == frame.count - network.offset } ?? false
        case EthernetHeaders.etherTypeIPv6:
            return EthernetHeaders.u16(frame, network.offset + 4).map { Int($0) == frame.count - network.offset - 40 } ?? false
        default:
            return false
        }
    }
}
