import HyperV

/// How partition reference time (TIME_REF_COUNT and the reference TSC page, 100 ns units)
/// relates to the host's time-stamp counter.
///
/// The guest TSC is the host TSC plus a fixed offset (KVM, without TSC scaling), so both the
/// root and the parent partition can compute a partition's reference time from their own
/// RDTSC: `((hostTSC + guestTSCOffset) * scale >> 64) + referenceOffset`.
public struct ReferenceTimeParameters: Hashable, Sendable {
    /// The guest TSC frequency in Hz.
    public var tscFrequencyHz: UInt64
    /// `(10^7 << 64) / tscFrequencyHz`.
    public var scale: UInt64
    /// Guest TSC minus host TSC (wrapping).
    public var guestTSCOffset: UInt64
    /// Added to the scaled guest TSC; chosen so reference time is 0 at partition creation.
    public var referenceOffset: Int64

    /// Parameters for a partition created now, when the guest TSC reads `guestTSCAtCreation`
    /// and the host TSC `hostTSCAtCreation`.
    public init(tscFrequencyHz: UInt64, guestTSCAtCreation: UInt64, hostTSCAtCreation: UInt64) {
        self.tscFrequencyHz = tscFrequencyHz
        scale = ReferenceTSCPage.scale(tscFrequencyHz: tscFrequencyHz)
        guestTSCOffset = guestTSCAtCreation &- hostTSCAtCreation
        let scaledStart = ReferenceTSCPage.referenceTime(tsc: guestTSCAtCreation, scale: scale, offset: 0)
        referenceOffset = -Int64(bitPattern: scaledStart)
    }

    public init(tscFrequencyHz: UInt64, scale: UInt64, guestTSCOffset: UInt64, referenceOffset: Int64) {
        self.tscFrequencyHz = tscFrequencyHz
        self.scale = scale
        self.guestTSCOffset = guestTSCOffset
        self.referenceOffset = referenceOffset
    }

    /// Reference time at host TSC `hostTSC`.
    @inlinable
    public func referenceTime(hostTSC: UInt64) -> UInt64 {
        referenceTime(guestTSC: hostTSC &+ guestTSCOffset)
    }

    /// Reference time when the guest TSC reads `guestTSC`: what the reference TSC page gives.
    @inlinable
    public func referenceTime(guestTSC: UInt64) -> UInt64 {
        ReferenceTSCPage.referenceTime(tsc: guestTSC, scale: scale, offset: referenceOffset)
    }
}
