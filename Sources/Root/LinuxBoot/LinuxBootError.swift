/// Why a Linux kernel could not be prepared for a 64-bit direct boot
/// (Docs/hyperv-interface.md §13.5).
///
/// bzImages, initrds and command lines come from users, so every check that fails on their
/// bytes ends here with a reason rather than a trap.
public enum LinuxBootError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file is not a bzImage (no "HdrS" magic, or a zImage that loads low); the string says which.
    case notBzImage(String)
    /// The boot protocol is older than 2.12, the first with `xloadflags` and the 64-bit entry.
    case unsupportedProtocol(version: UInt16)
    /// `xloadflags` lacks XLF_KERNEL_64: the kernel has no 64-bit entry point.
    case not64BitCapable
    /// The file ends before a structure it declares; the string names the structure.
    case truncated(String)
    /// A setup-header field holds a value no loader can honour; the string names it.
    case invalidHeader(String)
    /// The command line (without its terminating NUL) is longer than the kernel's `cmdline_size`.
    case commandLineTooLong(length: Int, limit: Int)
    /// The command line cannot be passed as a C string; the string says why.
    case invalidCommandLine(String)
    /// The e820 map would exceed 128 entries, or an entry is empty, wraps or overlaps another.
    case invalidMemoryMap(String)
    /// Something does not fit in guest RAM or in the place the boot protocol requires.
    case doesNotFit(String)

    public var description: String {
        switch self {
        case .notBzImage(let reason): "not a bzImage: \(reason)"
        case .unsupportedProtocol(let version):
            "boot protocol \(version >> 8).\(version & 0xFF) is older than 2.12, the first with a 64-bit entry"
        case .not64BitCapable: "the kernel has no 64-bit entry point (xloadflags lacks XLF_KERNEL_64)"
        case .truncated(let what): "truncated bzImage: \(what)"
        case .invalidHeader(let reason): "invalid setup header: \(reason)"
        case .commandLineTooLong(let length, let limit):
            "command line is \(length) bytes; the kernel accepts at most \(limit)"
        case .invalidCommandLine(let reason): "invalid command line: \(reason)"
        case .invalidMemoryMap(let reason): "invalid e820 map: \(reason)"
        case .doesNotFit(let reason): "does not fit: \(reason)"
        }
    }
}
