/// Why a management request failed, mapped onto an HTTP status by the API server.
public enum RootError: Error, CustomStringConvertible, Equatable {
    /// No partition has this name (404).
    case notFound(String)
    /// The request conflicts with the partition's state (409).
    case conflict(String)
    /// The request is malformed (400).
    case invalid(String)
    /// Something failed inside the root (500).
    case failed(String)

    public var description: String {
        switch self {
        case .notFound(let name): "No partition is named \(name): list them with `hv partition list`."
        case .conflict(let reason), .invalid(let reason), .failed(let reason): reason
        }
    }

    /// The HTTP status code.
    public var status: Int {
        switch self {
        case .notFound: 404
        case .conflict: 409
        case .invalid: 400
        case .failed: 500
        }
    }
}
