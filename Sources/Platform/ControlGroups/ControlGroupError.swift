import SystemPackage

/// A failed control-group operation: what was being done, on which path, and why.
public enum ControlGroupError: Error, Hashable, CustomStringConvertible {
    /// A file-system call on the hierarchy failed with `errno`.
    case system(operation: String, path: String, errno: Errno)
    /// A control or /proc file held something that does not parse.
    case malformed(path: String, content: String)
    /// The hierarchy lacks what was asked for (a controller or a kernel feature); a sentence.
    case unsupported(String)
    /// A name or value was refused before the hierarchy was touched; a sentence.
    case invalid(String)

    public var description: String {
        switch self {
        case .system(let operation, let path, let errno):
            "\(operation) \(path) failed: \(errno) (errno \(errno.rawValue))"
        case .malformed(let path, let content):
            "\(path) holds something unexpected: \"\(content.prefix(80))\""
        case .unsupported(let sentence), .invalid(let sentence):
            sentence
        }
    }

    /// The errno of a failed call, if that is what this is.
    public var errno: Errno? {
        if case .system(_, _, let errno) = self { return errno }
        return nil
    }
}
