import DeviceModel
import Foundation
import Glibc
import Hummingbird
import HummingbirdCore
import LinuxSupport
import Logging
import ManagementAPI
import NIOCore
import NIOHTTPTypes
import Privilege
import Synchronization

/// The root's management API: REST-style JSON over a Unix socket (documented in
/// Docs/management-api.md).
///
///     GET    /v1/root                         RootInfo
///     GET    /v1/partitions                   [PartitionInfo]
///     POST   /v1/partitions                   PartitionConfiguration → 201 PartitionInfo
///     GET    /v1/partitions/{name}            PartitionInfo
///     POST   /v1/partitions/{name}/actions    PartitionAction → PartitionInfo
///     GET    /v1/partitions/{name}/console    ConsoleOutput (?lines=N, default 200)
///     PATCH  /v1/partitions/{name}/cpu        ProcessorSettings → PartitionInfo
///     GET    /v1/partitions/{name}/stats      PartitionStatistics
///     DELETE /v1/partitions/{name}            204
///     POST   /v1/partitions/{name}/devices    DeviceConfiguration → 201 PartitionInfo (hot-add)
///     PUT    /v1/partitions/{name}/devices/{device}   settings object → PartitionInfo
///     DELETE /v1/partitions/{name}/devices/{device}   PartitionInfo (hot-remove)
///     GET    /v1/switches                     [SwitchInfo]
///     POST   /v1/switches                     SwitchConfiguration → 201 SwitchInfo
///     DELETE /v1/switches/{name}              204 (409 while NICs use it)
///
/// `{device}` is a device's instance GUID, or its kind when the partition has one of that kind.
///
/// Every error is a `RootError`, answered as `{"error": "<one sentence>"}` with the status its
/// `kind` maps it to: 400, 404, 409, 500, or 503 when the root already serves as many requests
/// on threads of their own (creates, actions, deletes, statistics, device, switch and
/// processor-control changes) as it may for the requester (`RequestSlots`), the user database
/// does not tell who the requester is in time (`UserDirectory`), or the parent lags behind a
/// device change.
///
/// Requests that name host files (a partition's images, a device's files) are served with the
/// rights of the user who sent them, which the socket tells (SO_PEERCRED): see `HostFiles`.
enum ManagementServer {
    /// Who may use the API: the root's user only (mode 0600), or also a group's members (0660).
    struct Access: Sendable {
        var group: gid_t?

        var mode: mode_t { group == nil ? 0o600 : 0o660 }
    }

    /// The API on `socketPath`, which appears only once it has the mode `access` gives it
    /// (`SocketPublication`): the server binds in a private directory and the socket is moved
    /// into place when the server runs.
    static func makeApplication(scheduler: RootScheduler, socketPath: String, access: Access, logger: Logger)
        throws(PrivilegeError) -> some ApplicationProtocol
    {
        let publication = try SocketPublication(path: socketPath)
        return makeApplication(scheduler: scheduler, bindingTo: publication.stagingPath, logger: logger) { _ in
            do throws(PrivilegeError) {
                try publication.publish(mode: access.mode, group: access.group)
                logger.info("management API on \(socketPath) (mode \(String(access.mode, radix: 8)))")
            } catch {
                logger.critical("cannot publish the management API socket: \(error)")
                exit(1)
            }
        }
    }

    /// Requests served on threads of their own at once (`offThread`: creates, actions, deletes,
    /// statistics, device additions and changes, which wait for KVM, host files or the parent),
    /// a quarter of them for one user other than the root's; more are answered 503 rather than
    /// given a thread each, so a user of the API cannot make the root start threads without bound.
    static let waitingRequestLimit = 16

    /// Connections open at once (a quarter of them for one user other than the root's); one
    /// more is closed as soon as it is accepted.
    static let connectionLimit = 128

    /// What the API bounds, so that its users cannot exhaust the root's threads or descriptors.
    struct Limits: Sendable {
        /// Requests that wait, each on a thread of its own (`waitingRequestLimit`).
        var waiting = RequestSlots(limit: waitingRequestLimit)
        /// Open connections (`connectionLimit`).
        var connections = RequestSlots(limit: connectionLimit)
        /// A connection that sends nothing for this long while no request of it is being
        /// served, or waits this long between two parts of a request, is closed.
        var idleTimeout: TimeAmount = .seconds(30)
        /// A connection whose request has not arrived whole this long after its head, or whose
        /// client has not taken a response whole this long after its head, is closed
        /// (`ConnectionBounds`).
        var transferTimeout: TimeAmount = .seconds(60)
        /// The user database, asked off the server's threads: lookups at once, how long a
        /// connection or request waits for one, how long answers are kept (`UserDirectory`).
        var users = UserDirectory()
    }

    /// The API bound directly at `socketPath` (tests, which own the directory it is in).
    static func makeApplication(scheduler: RootScheduler, socketPath: String, logger: Logger,
                                limits: Limits = Limits()) -> some ApplicationProtocol
    {
        makeApplication(scheduler: scheduler, bindingTo: socketPath, logger: logger, limits: limits) { _ in }
    }

    private static func makeApplication(scheduler: RootScheduler, bindingTo socketPath: String, logger: Logger,
                                        limits: Limits = Limits(),
                                        onServerRunning: @escaping @Sendable (any Channel) async -> Void)
        -> some ApplicationProtocol
    {
        let waiting = limits.waiting
        let connections = limits.connections
        let directory = limits.users
        let router = Router(context: APIRequestContext.self)
        router.get("/v1/root") { _, _ in
            json(RootInfo(version: hypervisorVersion, processID: getpid(),
                          parentConnected: scheduler.parentLink?.isConnected ?? false,
                          partitions: scheduler.list().count, processorControls: scheduler.processors.summary))
        }
        router.get("/v1/partitions") { _, _ in
            json(scheduler.list())
        }
        router.post("/v1/partitions") { request, context in
            let configuration: PartitionConfiguration
            do {
                configuration = try await APIBody.decode(PartitionConfiguration.self, from: request, context: context)
            } catch {
                return failure(.invalidRequest("The partition configuration is not valid JSON for a partition: \(error)."))
            }
            // Made on a thread of its own: the partition's memory, its image and KVM take a while.
            return await withRequester(context, in: directory) { requester in
                await respondOffThread(status: .created, slots: waiting, for: requester) { () throws(RootError) in
                    try scheduler.create(configuration, requester: requester)
                }
            }
        }
        router.get("/v1/partitions/:name") { _, context in
            let name = context.parameters.get("name") ?? ""
            return respond { () throws(RootError) in try scheduler.info(name) }
        }
        router.post("/v1/partitions/:name/actions") { request, context in
            let name = context.parameters.get("name") ?? ""
            let action: PartitionAction
            do {
                action = try await APIBody.decode(PartitionAction.self, from: request, context: context)
            } catch {
                return failure(.invalidRequest("The body must be {\"action\": \"start|pause|resume|stop|shutdown\"}."))
            }
            // A start waits (up to `RootScheduler.deviceSetUpTimeout`) for the parent to set up
            // the partition's devices: on a thread of its own, as `stats` does.
            return await withRequester(context, in: directory) { requester in
                await respondOffThread(slots: waiting, for: requester) { () throws(RootError) in try scheduler.perform(action.action, on: name) }
            }
        }
        router.get("/v1/partitions/:name/console") { request, context in
            let name = context.parameters.get("name") ?? ""
            let lines = request.uri.queryParameters.get("lines").flatMap { Int($0) } ?? 200
            return respond { () throws(RootError) in ConsoleOutput(lines: try scheduler.console(name, lines: lines)) }
        }
        router.post("/v1/partitions/:name/devices") { request, context in
            let name = context.parameters.get("name") ?? ""
            let device: DeviceConfiguration
            do {
                device = try await APIBody.decode(DeviceConfiguration.self, from: request, context: context)
            } catch {
                return failure(.invalidRequest("The body must be a device: a kind, or {\"kind\": …, settings}: \(error)."))
            }
            // The device's host files may be slow to open (NFS, FUSE): on a thread of its own.
            return await withRequester(context, in: directory) { requester in
                await respondOffThread(status: .created, slots: waiting, for: requester) { () throws(RootError) in
                    try scheduler.addDevice(device, to: name, requester: requester)
                }
            }
        }
        router.put("/v1/partitions/:name/devices/:device") { request, context in
            let name = context.parameters.get("name") ?? ""
            let device = context.parameters.get("device") ?? ""
            let settings: [String: JSONValue]
            do {
                settings = try await APIBody.decode([String: JSONValue].self, from: request, context: context)
            } catch {
                return failure(.invalidRequest("The body must be the device's settings, a JSON object: \(error)."))
            }
            return await withRequester(context, in: directory) { requester in
                await respondOffThread(slots: waiting, for: requester) { () throws(RootError) in
                    try scheduler.changeDevice(device, of: name, settings: settings, requester: requester)
                }
            }
        }
        router.delete("/v1/partitions/:name/devices/:device") { _, context in
            let name = context.parameters.get("name") ?? ""
            let device = context.parameters.get("device") ?? ""
            // Its host files close when the last reference goes, which can last as long as their
            // server takes to answer (NFS, FUSE): on a thread of its own, as adding one is.
            return await withRequester(context, in: directory) { requester in
                await respondOffThread(slots: waiting, for: requester) { () throws(RootError) in
                    try scheduler.removeDevice(device, from: name)
                }
            }
        }
        router.get("/v1/switches") { _, _ in
            json(scheduler.listSwitches())
        }
        router.post("/v1/switches") { request, context in
            let configuration: SwitchConfiguration
            do {
                configuration = try await APIBody.decode(SwitchConfiguration.self, from: request, context: context)
            } catch {
                return failure(.invalidRequest("The body must be a switch: {\"name\": …, \"kind\": \"private|internal|external\"}: \(error)."))
            }
            // An external switch's set-up runs tc: on a thread of its own.
            return await withRequester(context, in: directory) { requester in
                await respondOffThread(status: .created, slots: waiting, for: requester) { () throws(RootError) in
                    try scheduler.createSwitch(configuration, requester: requester)
                }
            }
        }
        router.delete("/v1/switches/:name") { _, context in
            let name = context.parameters.get("name") ?? ""
            return await withRequester(context, in: directory) { requester in
                switch await offThread(slots: waiting, for: requester, { () throws(RootError) in
                    try scheduler.deleteSwitch(name, requester: requester)
                }) {
                case .success: Response(status: .noContent)
                case .failure(let error): failure(error)
                }
            }
        }
        router.patch("/v1/partitions/:name/cpu") { request, context in
            let name = context.parameters.get("name") ?? ""
            let change: ProcessorSettings
            do {
                change = try await APIBody.decode(ProcessorSettings.self, from: request, context: context)
            } catch {
                return failure(.invalidRequest(
                    "The body must be {\"reserve\": 0-100, \"limit\": 1-100, \"weight\": 1-10000, \"affinity\": [processors]}, each optional."))
            }
            // It writes control files, which can wait on the kernel's cgroup locks: on a thread of
            // its own (readers of the controls never wait for it).
            return await withRequester(context, in: directory) { requester in
                await respondOffThread(slots: waiting, for: requester) { () throws(RootError) in
                    try scheduler.setProcessorControls(change, of: name)
                }
            }
        }
        router.get("/v1/partitions/:name/stats") { _, context in
            let name = context.parameters.get("name") ?? ""
            // The parent's channel counters may take up to a second to come: asked for on a thread
            // of its own, so slow answers never hold the server's concurrency threads.
            return await withRequester(context, in: directory) { requester in
                await respondOffThread(slots: waiting, for: requester) { () throws(RootError) in try scheduler.statistics(name) }
            }
        }
        router.delete("/v1/partitions/:name") { _, context in
            let name = context.parameters.get("name") ?? ""
            // A running partition is stopped first, which waits for its processors (one in an
            // exit waits up to seconds for the parent): on a thread of its own, as `stop` is.
            return await withRequester(context, in: directory) { requester in
                switch await offThread(slots: waiting, for: requester, { () throws(RootError) in try scheduler.delete(name) }) {
                case .success: Response(status: .noContent)
                case .failure(let error): failure(error)
                }
            }
        }
        let server = HTTPServerBuilder.http1(configuration: .init(
            additionalChannelHandlers: [ConnectionBounds(slots: connections, users: directory, timeout: limits.transferTimeout) { pid in
                scheduler.parentLink?.refusesAPIConnection(from: pid) ?? false
            }],
            idleTimeout: limits.idleTimeout))
        return Application(router: router, server: server,
                           configuration: .init(address: .unixDomainSocket(path: socketPath)),
                           onServerRunning: onServerRunning, logger: logger)
    }

    /// Runs `body` for the request's sender (`APIRequestContext.requester(in:)`), or answers why
    /// the root cannot tell who sent it.
    private static func withRequester(_ context: APIRequestContext, in directory: UserDirectory,
                                      _ body: (UserIdentity) async -> Response) async -> Response {
        switch await context.requester(in: directory) {
        case .success(let requester): await body(requester)
        case .failure(let error): failure(error)
        }
    }

    private static func respond<T: Encodable>(status: HTTPResponse.Status = .ok, _ body: () throws(RootError) -> T) -> Response {
        do {
            return json(try body(), status: status)
        } catch {
            return failure(error)
        }
    }

    /// `respond`, with `body` run on an OS thread of its own (for work that waits: on KVM, host
    /// files, the parent), if one of `slots` is free to `user`'s share holder; a 503 otherwise.
    private static func respondOffThread<T: Encodable & Sendable>(
        status: HTTPResponse.Status = .ok, slots: RequestSlots, for user: UserIdentity,
        _ body: @escaping @Sendable () throws(RootError) -> T
    ) async -> Response {
        switch await offThread(slots: slots, for: user, body) {
        case .success(let value): json(value, status: status)
        case .failure(let error): failure(error)
        }
    }

    /// Runs `body` on an OS thread of its own if one of `slots` is free to `user`'s share
    /// holder (`.busy` otherwise), so that its waiting never holds the server's concurrency
    /// threads.
    private static func offThread<T: Sendable>(
        slots: RequestSlots, for user: UserIdentity, _ body: @escaping @Sendable () throws(RootError) -> T
    ) async -> Result<T, RootError> {
        let holder = slots.shareHolder(of: user)
        guard slots.take(for: holder) else {
            return .failure(.busy("The root is already serving as many requests that wait "
                                 + "(creates, actions, deletes, statistics, device, switch and processor-control changes) "
                                 + "as it may for this user (\(slots.limit) at once, \(slots.userShare) for one user "
                                 + "other than the root's, \(slots.othersShare) for all of them); send this one again "
                                 + "when some have been answered."))
        }
        return await withCheckedContinuation { continuation in
            do throws(SystemError) {
                try OSThread.spawn(name: "api-wait") {
                    let result: Result<T, RootError>
                    do throws(RootError) {
                        result = .success(try body())
                    } catch {
                        result = .failure(error)
                    }
                    // Given back before the answer goes out, so the next request of a client
                    // that waits for each answer finds it free.
                    slots.release(for: holder)
                    continuation.resume(returning: result)
                }.detach()
            } catch {
                slots.release(for: holder)
                continuation.resume(returning: .failure(.busy("The root cannot start a thread for this request "
                                                                  + "(\(error)); send it again later.")))
            }
        }
    }

    private static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// The answer to a failed request: the error's sentence with the status its kind maps to.
    static func failure(_ error: RootError) -> Response {
        let answer = error.answer
        return Response(status: HTTPResponse.Status(code: answer.status), headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }
}

/// A management request's context: Hummingbird's, plus who sent the request.
struct APIRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// The peer of the request's connection (SO_PEERCRED), as `ConnectionBounds` admitted it.
    private let peer: UserDirectory.Peer?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peer = ConnectionBounds.admittedPeers.peer(of: source.channel)
    }

    /// The user who sent the request, with the groups the user database gives them, asked of
    /// `directory` (off the server's threads, within its timeout), the root's own user excepted;
    /// a request whose sender cannot be told is refused (never served with the root's own rights).
    func requester(in directory: UserDirectory) async -> Result<UserIdentity, RootError> {
        guard let peer else {
            return .failure(.invalidRequest("The root cannot tell who sent this request (no peer credentials on its socket)."))
        }
        // The root's own user is served with the root's own rights (`ThreadIdentity`), which
        // need nothing from the user database: its requests never wait for it.
        if peer.uid == geteuid() { return .success(UserIdentity(uid: peer.uid, gid: peer.gid)) }
        return await directory.user(peer).mapError { failure in
            .busy(UserDirectory.sentence(failure, uid: peer.uid, timeout: directory.timeout))
        }
    }
}

extension UserDirectory {
    /// Why a request from `uid` was not served.
    static func sentence(_ failure: Failure, uid: uid_t, timeout: Duration) -> String {
        switch failure {
        case .timedOut:
            "The root cannot tell who uid \(uid) is: the user database did not answer within \(timeout); send the request again later."
        case .busy:
            "The root cannot tell who uid \(uid) is: it is already waiting for the user database about other users; "
                + "send the request again later."
        case .failed:
            "The root cannot tell who uid \(uid) is: the user database failed; send the request again later."
        }
    }
}

/// Bounds one connection to the API: it holds one of `slots` for its peer's share holder, or is
/// closed as soon as its peer is known; and each request on it must arrive whole (head to end)
/// within `timeout` of its head, and each response be taken whole by the client within `timeout`
/// of its head, or the connection is closed. Hummingbird's idle timeout closes a connection that
/// sends no part for a while and none of whose requests is being answered; this closes one that
/// sends a request's body a byte at a time, each part just inside that timeout, or that never
/// reads what it asked for.
///
/// The share holder of a peer other than the root's user depends on the user database
/// (`RequestSlots.shareHolder(of:)`), which `users` asks off the event loop. Until it answers,
/// the connection holds a slot of the unlisted UIDs' share (so connections waiting for the
/// database are bounded as theirs are), the server asks it for nothing, and a request that
/// comes all the same (NIO reads what a peer sends before it half-closes) closes it; it is
/// closed too if the answer does not come within the directory's timeout. A listed user's
/// connection then trades that slot for one of its own share.
final class ConnectionBounds: ChannelDuplexHandler, RemovableChannelHandler {
    /// The peers of the connections admitted now, by connection: a request's context finds its
    /// sender here without asking the socket again (no hop to the event loop per request).
    static let admittedPeers = AdmittedPeers()

    /// Peers by connection, each from its admission until its handler is removed.
    final class AdmittedPeers: Sendable {
        private let peers = Mutex<[ObjectIdentifier: UserDirectory.Peer]>([:])

        func peer(of channel: any Channel) -> UserDirectory.Peer? {
            peers.withLock { $0[ObjectIdentifier(channel)] }
        }

        fileprivate func admit(_ peer: UserDirectory.Peer, on channel: any Channel) {
            peers.withLock { $0[ObjectIdentifier(channel)] = peer }
        }

        fileprivate func remove(_ channel: any Channel) {
            _ = peers.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
        }
    }

    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let slots: RequestSlots
    private let users: UserDirectory
    private let timeout: TimeAmount
    /// Whether a process is refused whoever its user (a parent partition's process).
    private let refuses: @Sendable (pid_t) -> Bool
    /// Whose share the connection's slot is from (the unlisted UIDs' while it is not admitted).
    private var holder: uid_t?
    /// The connection's peer, once the socket has told it.
    private var peer: UserDirectory.Peer?
    /// Whether the peer is known and the connection holds its own share's slot.
    private var admitted = false
    /// Whether the connection is gone, or this handler closed it.
    private var ended = false
    /// A read the pipeline asked for before the connection was admitted.
    private var readWaiting = false
    private var admissionDeadline: Scheduled<Void>?
    private var requestDeadline: Scheduled<Void>?
    private var responseDeadline: Scheduled<Void>?

    init(slots: RequestSlots, users: UserDirectory, timeout: TimeAmount, refuses: @escaping @Sendable (pid_t) -> Bool) {
        self.slots = slots
        self.users = users
        self.timeout = timeout
        self.refuses = refuses
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // On the channel's event loop the option is read at once (and were it not, a connection
        // gone by then takes no slot); a peer that cannot be told is not let in, as
        // `APIRequestContext.requester` refuses its requests.
        guard let provider = context.channel as? any SocketOptionProvider else {
            end(context)
            return
        }
        let peer = provider.unsafeGetSocketOption(
            level: .init(rawValue: PeerCredentials.optionLevel), name: .init(rawValue: PeerCredentials.optionName))
            as EventLoopFuture<PeerCredentials.RawValue>
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        peer.whenComplete { result in
            let (handler, context) = loopBound.value
            guard !handler.ended else { return }
            guard case .success(let raw) = result, !handler.refuses(raw.pid) else {
                handler.end(context)
                return
            }
            handler.admit(UserDirectory.Peer(uid: raw.uid, gid: raw.gid), context: context)
        }
    }

    /// Admits the connection to `peer`'s share holder, once the user database has told who it is.
    private func admit(_ peer: UserDirectory.Peer, context: ChannelHandlerContext) {
        self.peer = peer
        if peer.uid == slots.owner {
            admit(as: peer.uid, context: context)
            return
        }
        let eventLoop = context.eventLoop
        let loopBound = NIOLoopBound((self, context), eventLoop: eventLoop)
        // Called on the lookup's thread; runs after this call, on the event loop.
        let start = users.start(peer) { answer in
            eventLoop.execute {
                let (handler, context) = loopBound.value
                guard !handler.ended else { return }
                handler.admissionDeadline?.cancel()
                handler.admissionDeadline = nil
                guard case .success(let user) = answer else {
                    handler.end(context)
                    return
                }
                handler.admit(as: handler.slots.shareHolder(of: user), context: context)
            }
        }
        switch start {
        case .answered(let user):
            admit(as: slots.shareHolder(of: user), context: context)
        case .refused:
            end(context)
        case .waiting(let ticket):
            guard slots.take(for: RequestSlots.unlisted) else {
                _ = users.cancel(peer, ticket: ticket)
                end(context)
                return
            }
            holder = RequestSlots.unlisted
            let users = users
            admissionDeadline = eventLoop.scheduleTask(in: TimeAmount(users.timeout)) {
                let (handler, context) = loopBound.value
                if users.cancel(peer, ticket: ticket), !handler.ended { handler.end(context) }
            }
        }
    }

    /// Holds a slot of `shareHolder`'s (trading the unlisted share's for it) and lets reads through.
    private func admit(as shareHolder: uid_t, context: ChannelHandlerContext) {
        if holder != shareHolder {
            if let holder { slots.release(for: holder) }
            holder = nil
            guard slots.take(for: shareHolder) else {
                end(context)
                return
            }
            holder = shareHolder
        }
        admitted = true
        if let peer { Self.admittedPeers.admit(peer, on: context.channel) }
        if readWaiting {
            readWaiting = false
            context.read()
        }
    }

    /// Closes the connection; nothing this handler waits for acts on it any more.
    private func end(_ context: ChannelHandlerContext) {
        ended = true
        admissionDeadline?.cancel()
        admissionDeadline = nil
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if admitted {
            context.read()
        } else {
            readWaiting = true
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        ended = true
        if admitted { Self.admittedPeers.remove(context.channel) }
        if let holder { slots.release(for: holder) }
        holder = nil
        admissionDeadline?.cancel()
        admissionDeadline = nil
        requestDeadline?.cancel()
        requestDeadline = nil
        responseDeadline?.cancel()
        responseDeadline = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard admitted else {
            if !ended { end(context) }
            return
        }
        switch unwrapInboundIn(data) {
        case .head:
            requestDeadline?.cancel()
            requestDeadline = closing(context)
        case .body:
            break
        case .end:
            requestDeadline?.cancel()
            requestDeadline = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head:
            if responseDeadline == nil { responseDeadline = closing(context) }
        case .body:
            break
        case .end:
            // Taken whole once the end has been written to the socket.
            let written = promise ?? context.eventLoop.makePromise(of: Void.self)
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            written.futureResult.whenComplete { _ in
                handler.value.responseDeadline?.cancel()
                handler.value.responseDeadline = nil
            }
            context.write(data, promise: written)
            return
        }
        context.write(data, promise: promise)
    }

    /// Closes the connection `timeout` from now, unless cancelled.
    private func closing(_ context: ChannelHandlerContext) -> Scheduled<Void> {
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        return context.eventLoop.scheduleTask(in: timeout) { loopBound.value.close(promise: nil) }
    }
}

/// Slots for things in progress (connections, requests that wait), shared among the API's
/// users: the root's own user (`owner`) may take any free slot; every other user at most a
/// quarter of `limit` (at least one), and all other users together at most `limit` less a quarter.
/// So one member of the API group cannot take every slot, and none of them, together, can take
/// the quarter kept for the root's user. Users are told apart by `shareHolder(of:)`.
final class RequestSlots: Sendable {
    let limit: Int
    /// The root's own user.
    let owner: uid_t
    private let held = Mutex(Holdings())

    private struct Holdings {
        var owner = 0
        var others = 0
        /// Slots held by each user other than the owner; a user holding none has no entry, so
        /// this has at most `limit` entries.
        var byUser: [uid_t: Int] = [:]

        var total: Int { owner + others }
    }

    /// The share holder for every UID the user database has no account for.
    static let unlisted = uid_t.max

    init(limit: Int, owner: uid_t = geteuid()) {
        self.limit = max(limit, 0)
        self.owner = owner
    }

    /// Whose share `user` (as `UserDirectory` tells it) takes slots from: the owner, a user the user database lists,
    /// or, for every UID it does not list (the subordinate IDs a user maps into a user namespace,
    /// say), one share they all hold together, so no one multiplies their share by running
    /// processes under many such IDs. (uid_t.max is no one's UID: Linux reserves (uid_t)-1.)
    func shareHolder(of user: UserIdentity) -> uid_t {
        user.uid == owner || user.name != nil ? user.uid : Self.unlisted
    }

    /// The most slots one user other than the owner may hold.
    var userShare: Int { limit == 0 ? 0 : max(limit / 4, 1) }
    /// The most slots all users other than the owner may hold together.
    var othersShare: Int { limit - limit / 4 }

    /// Takes a slot for share holder `user`, if one is free to them; whoever takes one calls
    /// `release(for:)` once, with the same holder.
    func take(for user: uid_t) -> Bool {
        held.withLock { held in
            guard held.total < limit else { return false }
            guard user != owner else {
                held.owner += 1
                return true
            }
            let mine = held.byUser[user, default: 0]
            guard mine < userShare, held.others < othersShare else { return false }
            held.byUser[user] = mine + 1
            held.others += 1
            return true
        }
    }

    /// Gives back a slot `user` took; one they do not hold changes nothing.
    func release(for user: uid_t) {
        held.withLock { held in
            guard user != owner else {
                held.owner = max(held.owner - 1, 0)
                return
            }
            guard let mine = held.byUser[user] else { return }
            held.byUser[user] = mine > 1 ? mine - 1 : nil
            held.others -= 1
        }
    }

    /// Slots held now.
    var inUse: Int { held.withLock { $0.total } }
}
