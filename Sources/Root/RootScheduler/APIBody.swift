import Foundation
import Hummingbird
import ManagementAPI

/// How the root decodes a request body: at most `RequestContext.maxUploadSize` bytes (2 MiB),
/// nested at most `JSONNesting.limit` deep — checked before `JSONDecoder` sees it, which traps on
/// some inputs nested past its own limit — then decoded.
public enum APIBody {
    /// Why a body was not decoded.
    public enum Refusal: Error, CustomStringConvertible {
        case tooDeep

        public var description: String {
            "it is not UTF-8 JSON nesting arrays and objects at most \(JSONNesting.limit) deep"
        }
    }

    /// Decodes `bytes` as the root decodes a request body.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: some Collection<UInt8>) throws -> T {
        guard JSONNesting.isShallow(bytes) else { throw Refusal.tooDeep }
        return try JSONDecoder().decode(T.self, from: Data(bytes))
    }

    /// Collects and decodes the body of `request`.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, context: some RequestContext) async throws -> T {
        let buffer = try await request.body.collect(upTo: context.maxUploadSize)
        return try decode(T.self, from: buffer.readableBytesView)
    }
}
