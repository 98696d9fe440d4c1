import Foundation

/// The classes of failure the management API answers with, and their HTTP statuses
/// (Docs/management-api.md).
public enum ManagementErrorKind: Int, Sendable, CaseIterable {
    /// A malformed request or configuration, or a guest image that is missing or unbootable.
    case badRequest = 400
    /// No partition has the name.
    case notFound = 404
    /// The request conflicts with a partition's state or name.
    case conflict = 409
    /// Something failed inside the root scheduler (KVM, system calls, the parent link).
    case internalError = 500
    /// The root cannot take the request now (too many requests wait, or the parent partition
    /// lags behind a partition's device changes); it may be sent again.
    case unavailable = 503
}

/// An error answer of the management API: its HTTP status and its one sentence, the body
/// `{"error": "<sentence>"}`.
public struct ManagementError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The HTTP status.
    public var status: Int
    /// The sentence for users, naming the fix.
    public var message: String

    public init(status: Int, message: String) {
        self.status = status
        self.message = message
    }

    public init(_ kind: ManagementErrorKind, message: String) {
        self.init(status: kind.rawValue, message: message)
    }

    /// Decodes an error response; a body that is not `{"error": …}` reads as "HTTP <status>".
    public init(status: Int, body: Data) {
        let message = (try? JSONDecoder().decode(APIError.self, from: body))?.error
        self.init(status: status, message: message ?? "HTTP \(status)")
    }

    /// The class of failure, if the status is one the API documents.
    public var kind: ManagementErrorKind? { ManagementErrorKind(rawValue: status) }

    /// The response body.
    public var body: Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding a struct of one String cannot fail.
        return (try? encoder.encode(APIError(error: message))) ?? Data()
    }

    public var description: String { message }
}
