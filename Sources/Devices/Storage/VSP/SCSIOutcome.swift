import StorageProtocol

/// A byte range of a disk image.
public struct ByteRange: Hashable, Sendable {
    public var offset: UInt64
    public var length: UInt64

    public init(offset: UInt64, length: UInt64) {
        self.offset = offset
        self.length = length
    }
}

/// What a logical unit decided to do with one command. The device server never touches guest
/// memory or files: the channel's driver carries out data movement and I/O and reports back.
public enum SCSIOutcome: Hashable, Sendable {
    /// GOOD, no data.
    case good
    /// GOOD with these data-in bytes, already cut to the command's allocation length.
    case dataIn([UInt8])
    /// CHECK CONDITION with this sense data.
    case checkCondition(SenseData)
    /// Read `length` bytes at byte `offset` of the image into the guest's buffer.
    case read(offset: UInt64, length: Int, forceUnitAccess: Bool)
    /// Write `length` bytes from the guest's buffer at byte `offset`; with FUA the data must be
    /// durable before the command completes.
    case write(offset: UInt64, length: Int, forceUnitAccess: Bool)
    /// Make every completed write durable (fdatasync).
    case flush
    /// The command needs its `length`-byte parameter list (data-out) to go on: read it from the
    /// guest's buffer and hand it to `SCSIDisk.unmap(parameterList:)`.
    case needsParameterList(length: Int)
    /// Deallocate these ranges (hole punching); they read as zero afterwards.
    case unmap([ByteRange])
    /// The addressed unit was removed: SRB_STATUS_INVALID_LUN, which makes Linux remove it.
    case invalidLUN
}
