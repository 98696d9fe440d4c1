import NetworkProtocol

/// The frames a NIC channel has gathered for the switch while it reads the guest's ring. The
/// channel hands them over once they are at least `frameLimit` frames or `byteLimit` bytes (a
/// guest packet may carry many frames), and at the end of each pass over the ring. The byte
/// limit is for jumbo and LSO frames: the host kernel copies each frame the switch writes to a
/// TAP, and a run of 128 KiB is still in the worker's core cache, where it has just been copied
/// out of the guest's memory. Sixty-four 9014-byte frames (563 KiB) no longer are
/// (Docs/network.md, "Completions").
package struct TransmitBatch {
    /// Frames after which the batch is handed over: as many as one receive delivery carries.
    package static var frameLimit: Int { NetworkAdapter.deliveryBatch }
    /// Bytes of frames after which the batch is handed over.
    package static let byteLimit = 128 * 1024

    /// The frames gathered, in the order the guest sent them.
    package private(set) var frames: [NetworkFrame] = []
    /// Their bytes.
    package private(set) var bytes = 0

    package init() {}

    /// Adds `frame` at the end (moved, not copied).
    package mutating func append(_ frame: consuming NetworkFrame) {
        bytes += frame.bytes.count
        frames.append(consume frame)
    }

    /// Whether the batch is to be handed over now.
    package var isFull: Bool { frames.count >= Self.frameLimit || bytes >= Self.byteLimit }

    /// Whether there is nothing to hand over.
    package var isEmpty: Bool { frames.isEmpty }

    /// Hands the frames to `body`, which takes them (emptying the array, its capacity kept),
    /// and counts again whatever it left.
    package mutating func handOver(_ body: (inout [NetworkFrame]) -> Void) {
        body(&frames)
        bytes = frames.isEmpty ? 0 : frames.reduce(0) { $0 + $1.bytes.count }
    }
}
