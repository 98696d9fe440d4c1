/// The setup header's `loadflags` byte at 0x211 (Documentation/x86/boot.rst).
public struct LoadFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// LOADED_HIGH: the protected-mode code loads at 1 MiB or above (every bzImage sets it).
    public static let loadedHigh = LoadFlags(rawValue: 1 << 0)
    /// KASLR_FLAG: set by the kernel itself, read-only for loaders.
    public static let kaslr = LoadFlags(rawValue: 1 << 1)
    /// QUIET_FLAG: suppress early messages.
    public static let quiet = LoadFlags(rawValue: 1 << 5)
    /// KEEP_SEGMENTS: obsolete.
    public static let keepSegments = LoadFlags(rawValue: 1 << 6)
    /// CAN_USE_HEAP: `heap_end_ptr` is valid (real-mode setup only).
    public static let canUseHeap = LoadFlags(rawValue: 1 << 7)
}
