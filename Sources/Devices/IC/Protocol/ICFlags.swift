/// The icflags byte of an IC message header (Docs/hyperv-interface.md §10.2).
public struct ICFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Bit 0: part of a request/response transaction.
    public static let transaction = ICFlags(rawValue: 1)
    /// Bit 1: a host request.
    public static let request = ICFlags(rawValue: 2)
    /// Bit 2: a guest response.
    public static let response = ICFlags(rawValue: 4)
}
