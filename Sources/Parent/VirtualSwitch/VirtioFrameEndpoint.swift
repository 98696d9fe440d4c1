import LinuxSupport
import NetworkProtocol

/// A host-side frame descriptor that speaks virtio-net headers: the TAP of an internal switch,
/// or of an external one (which the root joins to the uplink, `UplinkMirror`). It turns the
/// header into switch metadata on the way in and back on the way out.
public struct VirtioFrameEndpoint: Sendable {
    public let descriptor: OwnedDescriptor
    /// Bytes of virtio-net header before each frame.
    public let headerSize: Int

    /// Largest frame read: a 64 KiB GSO packet plus headers.
    public static let maximumFrameSize = 65536 + 256

    /// A switch port on a TAP descriptor handed in (created with `TAPDevice.create`, which sets
    /// IFF_TAP | IFF_NO_PI | IFF_VNET_HDR): 12-byte headers, non-blocking, and TUNSETOFFLOAD
    /// with checksum offload only, so the kernel hands over partial checksums (completed here
    /// or by a virtio peer) but segments large packets itself before they reach a guest that
    /// cannot take them.
    public static func tap(_ descriptor: OwnedDescriptor) throws(SystemError) -> VirtioFrameEndpoint {
        try TAPDevice.configure(descriptor, headerSize: Int32(VirtioNetHeader.size), offloads: [.checksum])
        return VirtioFrameEndpoint(descriptor: descriptor, headerSize: VirtioNetHeader.size)
    }

    public init(descriptor: OwnedDescriptor, headerSize: Int) {
        self.descriptor = descriptor
        self.headerSize = headerSize
    }

    /// The result of one read.
    public enum Read: Sendable {
        /// A frame and what its header said.
        case frame(NetworkFrame)
        /// Nothing waiting.
        case empty
        /// A frame whose header the switch cannot honour (UDP GSO, an odd checksum offset) or
        /// that is shorter than its header; it was consumed.
        case unusable
    }

    /// Bytes a read needs room for: the header and the largest frame (a TAP's MTU is at most
    /// 65,535 bytes; a read into less would cut a frame short, not always saying so).
    public var readSize: Int { Self.maximumFrameSize + headerSize }

    /// Reads one frame. `buffer` is scratch space of `readSize` bytes.
    public func read(into buffer: inout [UInt8]) throws(SystemError) -> Read {
        guard let count = try FrameIO.read(descriptor, into: &buffer) else { return .empty }
        return buffer.withUnsafeBytes { frame(in: $0, count: count) }
    }

    /// The frame a read of `count` bytes left in `bytes` (more than `bytes` holds if the read
    /// cut the frame short and said so: such a frame is unusable).
    public func frame(in bytes: UnsafeRawBufferPointer, count: Int) -> Read {
        guard count <= bytes.count, count >= headerSize + NetworkFrame.ethernetHeaderSize,
            let header = VirtioNetHeader(bytes: Array(bytes[0..<headerSize]))
        else { return .unusable }
        let frame = Array(bytes[headerSize..<count])
        guard let offload = header.offload(for: frame) else { return .unusable }
        return .frame(NetworkFrame(bytes: frame, offload: offload))
    }

    /// Writes a frame resolved for a virtio destination (the switch did that when queueing it).
    /// - Returns: `false` if the descriptor would block; the frame was not written.
    public func write(_ frame: NetworkFrame) throws(SystemError) -> Bool {
        try FrameIO.write(descriptor, header: header(for: frame), frame: frame.bytes)
    }

    /// The virtio-net header written before `frame`, `headerSize` bytes.
    func header(for frame: NetworkFrame) -> [UInt8] {
        // Most frames need no offload: their header is all zeros, built once.
        Self.needsHeader(frame) ? VirtioNetHeader(for: frame).bytes(size: headerSize) : zeroHeader
    }

    /// Whether `frame`'s virtio-net header says anything (otherwise it is all zeros).
    static func needsHeader(_ frame: NetworkFrame) -> Bool {
        frame.offload.needsCompletion || frame.offload.receiveChecksum != nil
    }

    /// The header of a frame that asks for nothing.
    private var zeroHeader: [UInt8] { headerSize == VirtioNetHeader.size ? Self.zeroHeader : Self.zeroLegacyHeader }
    private static let zeroHeader = VirtioNetHeader().bytes(size: VirtioNetHeader.size)
    private static let zeroLegacyHeader = VirtioNetHeader().bytes(size: VirtioNetHeader.legacySize)
}
