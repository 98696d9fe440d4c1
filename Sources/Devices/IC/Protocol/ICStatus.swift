/// The u32 status of an IC message header, an HRESULT (Docs/hyperv-interface.md §10.2).
public struct ICStatus: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// HV_S_OK (0).
    public static let success = ICStatus(rawValue: 0)
    /// HV_E_FAIL (0x80004005), e.g. a hibernate request the guest cannot honour.
    public static let failure = ICStatus(rawValue: 0x8000_4005)
}
