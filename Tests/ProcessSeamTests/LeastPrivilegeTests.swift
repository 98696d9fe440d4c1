import ControlProtocol
import DeviceRegistry
import Foundation
import Glibc
@testable import KVM
import LinuxSupport
@testable import ParentPartition
import Privilege
@testable import RootScheduler
import Testing
import TestSupport

/// Who may reach the root and the parent, and how the sockets between them are set up
/// (Docs/security.md): every test here failed on the code before the least-privilege work.
@Suite("Least privilege: sockets and peer credentials", .serialized)
struct LeastPrivilegeTests {
    static let isRoot = geteuid() == 0
    /// A user that is neither root nor the test's.
    static let stranger = UserIdentity(uid: 65534, gid: 65534)

    /// A process of another user that reaches `parent.sock` (here the test opens the socket to
    /// everyone, as a permission mistake would) is hung up on before the welcome: it never sees
    /// a partition's memory. Before: it was welcomed and handed every partition's memfd.
    @Test(.enabled(if: isRoot, "needs root to act as another user"))
    func aParentOfAnotherUserIsRefusedBeforeAnyMemory() throws {
        let root = try RootEnd()
        defer { root.stop() }
        _ = try root.table.add("alpha")
        chmod(root.socketPath, 0o666)
        let path = root.socketPath
        let outcome = try ThreadIdentity.asUser(Self.stranger) { () -> String in
            guard let socket = try? SequencedPacketSocket.connect(path: path) else { return "cannot connect" }
            let end = ScriptedEnd(socket)
            guard (try? end.channel.send(.hello(parentProcessID: UInt32(getpid())))) != nil else { return "closed" }
            do {
                switch try end.rootMessage(within: 10) {
                case .closed: return "closed"
                case .message(let message, let descriptors): return "got \(message) with \(descriptors.count) descriptors"
                }
            } catch {
                return "closed"  // ECONNRESET
            }
        }
        #expect(outcome == "closed")
        // The parent's own user still gets in.
        let parent = try ScriptedEnd.parent(connectingTo: root.socketPath)
        defer { parent.close() }
        let attached = try parent.rootMessage { message, descriptors -> Int? in
            if case .partitionAttached = message { return descriptors.count }
            return nil
        }
        #expect(attached == 1)
    }

    /// A parent that runs as a user the management API lets in (the root's own, where the root
    /// does not run as root) cannot step out of its sandbox through the API: a process that
    /// connected as the parent partition is hung up on by the API while it runs. Before: it was
    /// served as the root's own user.
    @Test func aParentsProcessIsRefusedByTheManagementAPI() async throws {
        let (scheduler, _) = try RootBoundsTests.scheduler()
        let directory = try SocketDirectory()
        let link = try ParentLink(directory: scheduler, socketPath: directory.parentSocket)
        scheduler.link.withLock { $0 = link }
        try link.start()
        defer { link.shutdown() }
        let socket = "\(directory.path)/root.sock"
        let application = ManagementServer.makeApplication(scheduler: scheduler, socketPath: socket, logger: quietLogger)
        let server = Task { try await application.runService(gracefulShutdownSignals: []) }
        defer { server.cancel() }
        #expect(await eventuallyAsync { FileManager.default.fileExists(atPath: socket) })
        #expect(RawHTTP.request(socket: socket, method: "GET", path: "/v1/root", body: [])?.status == 200)
        // This process connects as the parent partition: from now on the API hangs up on it.
        let parent = try ScriptedEnd.parent(connectingTo: directory.parentSocket)
        #expect(try parent.rootAnswers(probe: 1))
        #expect(link.isParentProcess(getpid()))
        #expect(RawHTTP.request(socket: socket, method: "GET", path: "/v1/root", body: []) == nil)
        // Its link closed, the process still runs and is still refused.
        parent.close()
        #expect(await eventuallyAsync { !link.isConnected })
        #expect(RawHTTP.request(socket: socket, method: "GET", path: "/v1/root", body: []) == nil)
    }

    /// The parent checks who listens on the root's socket before it says hello: a socket of
    /// another user in the root's place gets nothing. Before: the parent greeted whoever listened.
    @Test(.enabled(if: isRoot, "needs root to act as another user"))
    func theParentDoesNotGreetARootOfAnotherUser() throws {
        let directory = try SocketDirectory()
        chmod(directory.path, 0o777)  // where the impostor may bind
        let path = directory.parentSocket
        // The impostor's listening socket carries its credentials (unix(7): those of the process
        // that called listen).
        let listener = try ThreadIdentity.asUser(Self.stranger) { () -> SequencedPacketSocket? in
            try? SequencedPacketSocket.listen(path: path)
        }
        let impostor = try #require(listener)
        chmod(path, 0o666)
        let parent = try ParentEnd(socketPath: path)
        defer { parent.stop() }
        guard try Poll.wait(on: [impostor.owned.rawValue], timeoutMilliseconds: 10_000).first == true else {
            Issue.record("the parent never connected")
            return
        }
        let end = ScriptedEnd(try impostor.accept())
        #expect(end.closes(within: 3), "the parent hung up without a hello")
    }

    /// parent.sock appears in the directory with its final owner and mode: created in a private
    /// staging directory and renamed into place, never bound in place and restricted after.
    /// Before: bind in place (mode from the umask), then chmod — a window any local user could use.
    @Test func theParentSocketAppearsAlreadyRestricted() throws {
        let directory = try SocketDirectory()
        let watch = try DirectoryWatch(directory.path)
        let root = try RootEnd(directory: directory)
        defer { root.stop() }
        let events = watch.events(named: "parent.sock")
        #expect(events.first == .movedIn, "\(events)")
        #expect(!events.contains(.created) && !events.contains(.attributesChanged), "\(events)")
        var status = stat()
        #expect(lstat(root.socketPath, &status) == 0)
        #expect(status.st_mode & 0o777 == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["parent.sock"])
    }

    /// The management API's socket is likewise published restricted (0600, the root's user only),
    /// whatever the umask. Before: bound in place with the umask's mode and never restricted.
    @Test func theAPISocketAppearsRestrictedToItsOwner() async throws {
        let scheduler = try MockKernel.$current.withValue(MockKernel()) {
            try RootScheduler(catalog: DeviceRegistry.catalog, logger: quietLogger)
        }
        let directory = try SocketDirectory()
        let watch = try DirectoryWatch(directory.path)
        let socket = "\(directory.path)/root.sock"
        let application = try ManagementServer.makeApplication(scheduler: scheduler, socketPath: socket, access: .init(),
                                                               logger: quietLogger)
        let server = Task { try await application.runService(gracefulShutdownSignals: []) }
        defer { server.cancel() }
        #expect(await eventuallyAsync { FileManager.default.fileExists(atPath: socket) })
        let events = watch.events(named: "root.sock")
        #expect(events.first == .movedIn, "\(events)")
        #expect(!events.contains(.created) && !events.contains(.attributesChanged), "\(events)")
        var status = stat()
        #expect(lstat(socket, &status) == 0)
        #expect(status.st_mode & 0o777 == 0o600)
    }

    /// A runtime directory others can write to (where they could swap the sockets) is refused
    /// before the root opens anything. Before: it was used as found.
    @Test func aRuntimeDirectoryOthersCanWriteIsRefused() async throws {
        let directory = try SocketDirectory()
        chmod(directory.path, 0o777)
        let error = await Self.startFailure(runtimeDirectory: directory.path)
        guard case .runtimeDirectory(_, .refused(let sentence))? = error else {
            Issue.record("not refused: \(String(describing: error))")
            return
        }
        #expect(sentence.contains("Others can write to the runtime directory"))
    }

    /// …and so is one that belongs to another user, or a symbolic link in its place.
    @Test(.enabled(if: isRoot, "needs root to give a directory away"))
    func aRuntimeDirectoryOfAnotherUserOrALinkIsRefused() async throws {
        let directory = try SocketDirectory()
        chown(directory.path, Self.stranger.uid, Self.stranger.gid)
        chmod(directory.path, 0o700)
        guard case .runtimeDirectory(_, .refused(let sentence))? = await Self.startFailure(runtimeDirectory: directory.path) else {
            Issue.record("another user's directory was used")
            return
        }
        #expect(sentence.contains("belongs to uid 65534"))
        let link = directory.path + "-link"
        let target = try SocketDirectory()
        #expect(symlink(target.path, link) == 0)
        defer { unlink(link) }
        guard case .runtimeDirectory(_, .refused(let linkSentence))? = await Self.startFailure(runtimeDirectory: link) else {
            Issue.record("a symbolic link was followed")
            return
        }
        #expect(linkSentence.contains("is not a directory"))
    }

    /// Runs a root service on `runtimeDirectory` and returns how it failed; a root that starts
    /// serving instead is stopped after 20 s and reported as nil.
    static func startFailure(runtimeDirectory: String) async -> RootServiceError? {
        let service = RootService(runtimeDirectory: runtimeDirectory, catalog: DeviceRegistry.catalog, logger: quietLogger,
                                  parentUser: .current)
        let run = Task { () -> RootServiceError? in
            do {
                try await service.run()
                return nil
            } catch let error as RootServiceError {
                return error
            } catch {
                return nil
            }
        }
        let deadline = Task {
            try await Task.sleep(for: .seconds(20))
            run.cancel()
        }
        defer { deadline.cancel() }
        return await run.value
    }
}

/// inotify(7) on one directory: what happened to its entries, in order.
final class DirectoryWatch {
    enum Event: Equatable { case created, attributesChanged, movedIn, other }

    private let fd: Int32

    init(_ path: String) throws {
        fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { throw SystemError.current("inotify_init1") }
        guard inotify_add_watch(fd, path, UInt32(IN_CREATE | IN_ATTRIB | IN_MOVED_TO)) >= 0 else {
            throw SystemError.current("inotify_add_watch \(path)")
        }
    }

    deinit { close(fd) }

    /// The events so far on entry `name`.
    func events(named name: String) -> [Event] {
        var found: [Event] = []
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { return found }
            var offset = 0
            // struct inotify_event: wd i32, mask u32, cookie u32, len u32, name[len].
            while offset + 16 <= count {
                let mask = le(buffer, offset + 4, as: UInt32.self)
                let length = Int(le(buffer, offset + 12, as: UInt32.self))
                let nameBytes = buffer[(offset + 16)..<min(count, offset + 16 + length)].prefix { $0 != 0 }
                if String(decoding: nameBytes, as: UTF8.self) == name {
                    if mask & UInt32(IN_CREATE) != 0 { found.append(.created) }
                    else if mask & UInt32(IN_ATTRIB) != 0 { found.append(.attributesChanged) }
                    else if mask & UInt32(IN_MOVED_TO) != 0 { found.append(.movedIn) }
                    else { found.append(.other) }
                }
                offset += 16 + length
            }
        }
    }
}
