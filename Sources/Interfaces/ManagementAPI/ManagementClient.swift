import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A client of the root scheduler's management API: HTTP/1.1 with JSON bodies over the
/// root's Unix socket (the model Firecracker and Cloud Hypervisor use).
public struct ManagementClient: Sendable {
    /// The root's API socket.
    public let socketPath: String
    /// How long a request may take before the client gives up on the root.
    public let timeout: Duration

    public init(socketPath: String, timeout: Duration = .seconds(120)) {
        self.socketPath = socketPath
        self.timeout = timeout
    }

    /// A response: status code and body.
    public struct Response: Sendable {
        public var status: Int
        public var body: Data
    }

    /// Sends one request and waits for the whole response, for up to `timeout`.
    public func send(_ method: HTTPMethod, _ path: String, body: Data? = nil) async throws(ManagementClientError) -> Response {
        try await send(method, path, body: body, within: timeout)
    }

    /// Sends one request and waits for the whole response, for up to `limit`.
    private func send(_ method: HTTPMethod, _ path: String, body: Data?, within limit: Duration)
        async throws(ManagementClientError) -> Response
    {
        guard FileManager.default.fileExists(atPath: socketPath) else { throw .rootNotRunning(socketPath) }
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: Response.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise))
                    }
                }
                .connect(unixDomainSocketPath: socketPath).get()
        } catch {
            promise.fail(error)
            throw .rootNotRunning(socketPath)
        }
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: "localhost")
        head.headers.add(name: "Connection", value: "close")
        if let body {
            head.headers.add(name: "Content-Type", value: "application/json")
            head.headers.add(name: "Content-Length", value: String(body.count))
        } else {
            head.headers.add(name: "Content-Length", value: "0")
        }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let (seconds, attoseconds) = limit.components
        let deadline = channel.eventLoop.scheduleTask(in: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)) {
            promise.fail(RequestTimedOut())
        }
        do {
            let response = try await promise.futureResult.get()
            deadline.cancel()
            try? await channel.close()
            return response
        } catch is RequestTimedOut {
            try? await channel.close()
            throw .timedOut(request: "\(method) \(path)", seconds: Int(timeout.components.seconds))
        } catch is ClosedUnanswered {
            deadline.cancel()
            try? await channel.close()
            throw .closedUnanswered(request: "\(method) \(path)")
        } catch {
            deadline.cancel()
            try? await channel.close()
            throw .transport("\(error)")
        }
    }

    private struct RequestTimedOut: Error {}

    /// The API's typed error from a failed response.
    static func apiError(_ response: Response) -> ManagementClientError {
        .api(ManagementError(status: response.status, body: response.body))
    }

    /// `send`, sent again while the root answers 503 (it already serves as many requests that
    /// wait as it allows), after 20 ms, then twice as long each time up to half a second, all
    /// within `timeout` of the first try; the last answer is returned.
    public func sendWhenAccepted(_ method: HTTPMethod, _ path: String, body: Data? = nil)
        async throws(ManagementClientError) -> Response
    {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var pause = Duration.milliseconds(20)
        while true {
            let response = try await send(method, path, body: body, within: max(clock.now.duration(to: deadline), .milliseconds(1)))
            guard response.status == ManagementErrorKind.unavailable.rawValue, clock.now.advanced(by: pause) < deadline
            else { return response }
            do {
                try await Task.sleep(for: pause)
            } catch {
                return response
            }
            pause = min(pause * 2, .milliseconds(500))
        }
    }

    /// `DELETE /v1/partitions/{name}`: stops the partition if it runs and forgets it.
    public func deletePartition(_ name: String) async throws(ManagementClientError) {
        let response = try await sendWhenAccepted(.DELETE, "/v1/partitions/\(name)")
        guard (200..<300).contains(response.status) else { throw Self.apiError(response) }
    }

    /// Sends a request (again while the root is busy: `sendWhenAccepted`) and decodes a JSON
    /// response, turning API errors into `ManagementClientError.api`.
    public func request<Result: Decodable>(
        _ method: HTTPMethod, _ path: String, body: (some Encodable)? = Optional<String>.none, as type: Result.Type
    ) async throws(ManagementClientError) -> Result {
        var data: Data?
        if let body {
            do {
                data = try JSONEncoder().encode(body)
            } catch {
                throw .transport("could not encode the request: \(error)")
            }
        }
        let response = try await sendWhenAccepted(method, path, body: data)
        guard (200..<300).contains(response.status) else { throw Self.apiError(response) }
        do {
            return try JSONDecoder().decode(Result.self, from: response.body)
        } catch {
            throw .transport("unexpected response to \(method) \(path): \(error)")
        }
    }
}

/// Collects one HTTP response.
private final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    // SAFETY: used only on its channel's event loop.
    typealias InboundIn = HTTPClientResponsePart
    private let promise: EventLoopPromise<ManagementClient.Response>
    private var status = 0
    private var body = Data()
    private var answered = false

    init(promise: EventLoopPromise<ManagementClient.Response>) {
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            answered = true
            status = Int(head.status.code)
        case .body(var buffer):
            if let bytes = buffer.readBytes(length: buffer.readableBytes) { body.append(contentsOf: bytes) }
        case .end:
            promise.succeed(ManagementClient.Response(status: status, body: body))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A connection the root closed at once, with the request unread, is reset.
        if !answered, let error = error as? IOError, [ECONNRESET, EPIPE].contains(error.errnoCode) {
            promise.fail(ClosedUnanswered())
        } else {
            promise.fail(error)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(answered ? ChannelError.eof : ClosedUnanswered())
    }
}

/// The root closed the connection before any answer began.
struct ClosedUnanswered: Error {}

/// Why a management request failed.
public enum ManagementClientError: Error, CustomStringConvertible {
    case rootNotRunning(String)
    case transport(String)
    /// The root closed the connection before answering: at its connection limit (or the
    /// user's share of it) it closes new connections at once, and a connection whose user the
    /// user database did not tell in time; or it was stopping.
    case closedUnanswered(request: String)
    case timedOut(request: String, seconds: Int)
    /// The root answered with an error: its status and sentence.
    case api(ManagementError)

    /// The API's answer, when the root answered with an error.
    public var apiError: ManagementError? {
        if case .api(let error) = self { return error }
        return nil
    }

    public var description: String {
        switch self {
        case .rootNotRunning(let path):
            "The root scheduler is not running (nothing listens on \(path)): start it with `hv root`."
        case .transport(let reason):
            "Could not talk to the root scheduler: \(reason)."
        case .closedUnanswered(let request):
            "The root scheduler closed the connection without answering \(request): it already has as many API "
                + "connections open as it allows, or as it allows one user, or the user database did not tell it "
                + "who you are in time; close some connections (or wait for them to end) and send it again."
        case .timedOut(let request, let seconds):
            "The root scheduler did not answer \(request) within \(seconds) s: check its log, and restart it if it is stuck."
        case .api(let error):
            error.message
        }
    }
}

/// Where the root and parent put their sockets.
public enum RuntimeDirectory {
    /// `HV_RUNTIME_DIR`, else /run/hv for root, else $XDG_RUNTIME_DIR/hv, else /tmp/hv-<uid>.
    public static var standard: String {
        let environment = ProcessInfo.processInfo.environment
        if let explicit = environment["HV_RUNTIME_DIR"] { return explicit }
        if getuid() == 0 { return "/run/hv" }
        if let runtime = environment["XDG_RUNTIME_DIR"] { return "\(runtime)/hv" }
        return "/tmp/hv-\(getuid())"
    }

    /// The management API socket in `directory`.
    public static func apiSocket(in directory: String) -> String { "\(directory)/root.sock" }
    /// The root↔parent control socket in `directory`.
    public static func parentSocket(in directory: String) -> String { "\(directory)/parent.sock" }
}
