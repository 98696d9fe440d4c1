/// Why ACPI tables or AML could not be built (Docs/hyperv-interface.md §13.4).
public enum ACPIError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The platform description asks for something the tables cannot express; the string says what.
    case invalidConfiguration(String)
    /// An AML name or path is malformed (segments are 1-4 of A-Z, 0-9, _, not starting with a digit).
    case invalidName(String)
    /// A value cannot be encoded in AML; the string says which and why.
    case unencodable(String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let reason): "invalid ACPI configuration: \(reason)"
        case .invalidName(let name): "invalid AML name \"\(name)\""
        case .unencodable(let reason): "cannot encode in AML: \(reason)"
        }
    }
}
