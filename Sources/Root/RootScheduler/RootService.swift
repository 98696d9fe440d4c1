import DeviceModel
import Foundation
import Hummingbird
import KVM
import LinuxSupport
import Logging
import ManagementAPI
import Privilege

/// The `hv root` process: the scheduler, the parent link and the management API, until
/// SIGINT or SIGTERM; then every partition is stopped and the sockets removed.
///
/// Its runtime directory must be its own and writable by no one else (`SecureDirectory`);
/// `root.sock` is mode 0600 (0660 with an API group) and `parent.sock` belongs to the parent's
/// user, mode 0600, each from the moment it appears (Docs/security.md).
public struct RootService {
    public let runtimeDirectory: String
    public let logger: Logger
    let catalog: DeviceCatalog
    let processorControls: ProcessorControlOptions
    /// The user the parent partition runs as: the only one (besides the root's own) it accepts
    /// on `parent.sock`.
    public let parentUser: UserIdentity
    /// A group whose members may use the management API besides the root's user.
    public let apiGroup: gid_t?

    /// - Parameters:
    ///   - catalog: the device types partitions may use (`DeviceRegistry.catalog`).
    ///   - processorControls: how partitions' processor controls are enforced (Docs/scheduling.md).
    ///   - parentUser: the parent partition's user (`UserIdentity.defaultParent` by default).
    ///   - apiGroup: a group that may use the API too (its members' requests run with their rights).
    public init(runtimeDirectory: String, catalog: DeviceCatalog, logger: Logger,
                processorControls: ProcessorControlOptions = ProcessorControlOptions(),
                parentUser: UserIdentity = .defaultParent, apiGroup: gid_t? = nil) {
        self.runtimeDirectory = runtimeDirectory
        self.catalog = catalog
        self.logger = logger
        self.processorControls = processorControls
        self.parentUser = parentUser
        self.apiGroup = apiGroup
    }

    public func run() async throws {
        // Nothing the root creates is for others unless it says so.
        umask(0o077)
        // Each partition holds a few descriptors in the root (RAM, processors, two per doorbell).
        OpenFileLimit.raiseToHard()
        do throws(PrivilegeError) {
            try SecureDirectory.prepare(runtimeDirectory, searchable: parentUser.uid != geteuid() || apiGroup != nil)
        } catch {
            throw RootServiceError.runtimeDirectory(runtimeDirectory, error)
        }
        let apiSocket = RuntimeDirectory.apiSocket(in: runtimeDirectory)
        let parentSocket = RuntimeDirectory.parentSocket(in: runtimeDirectory)
        if (try? await ManagementClient(socketPath: apiSocket).request(.GET, "/v1/root", as: RootInfo.self)) != nil {
            throw RootServiceError.alreadyRunning(apiSocket)
        }
        if !RequestedFile.isGuarded {
            logger.warning("openat2 is not available here (Linux before 5.6, or a seccomp profile refusing it): files named by requests are opened without refusing /proc links to the root's own open files; a file no directory holds is still refused (Docs/security.md)")
        }
        let scheduler = try RootScheduler(catalog: catalog, logger: logger, processorControls: processorControls)
        let link: ParentLink
        do {
            link = try ParentLink(directory: scheduler, socketPath: parentSocket, parentUser: parentUser)
            scheduler.link.withLock { $0 = link }
            try link.start()
        } catch {
            scheduler.processors.shutdown()
            unlink(parentSocket)
            throw error
        }
        defer {
            scheduler.stopAll()
            scheduler.processors.shutdown()
            link.shutdown()
            unlink(apiSocket)
            unlink(parentSocket)
            logger.info("root scheduler stopped")
        }
        let application = try ManagementServer.makeApplication(
            scheduler: scheduler, socketPath: apiSocket, access: .init(group: apiGroup), logger: logger)
        logger.info("""
            root scheduler \(hypervisorVersion) listening on \(apiSocket) (parent link \(parentSocket), for the parent \
            partition running as \(parentUser))
            """)
        try await application.runService()
    }
}

/// Why the root scheduler could not start.
public enum RootServiceError: Error, CustomStringConvertible {
    case kvm(KVMError)
    case alreadyRunning(String)
    case runtimeDirectory(String, PrivilegeError)
    /// The processor controls cannot be set up as asked (e.g. `--parent-processors` names
    /// processors the root may not use); the sentence says why.
    case processorControls(String)

    public var description: String {
        switch self {
        case .kvm(let error):
            if let hint = error.hint { return "Cannot use KVM: \(hint)" }
            return "Cannot use KVM: \(error)."
        case .alreadyRunning(let socket):
            return "A root scheduler is already running on \(socket): stop it first or use another --runtime-dir."
        case .runtimeDirectory(_, .refused(let sentence)):
            return sentence
        case .runtimeDirectory(let path, let reason):
            return "Cannot use the runtime directory \(path) (\(reason)): choose another with --runtime-dir."
        case .processorControls(let sentence):
            return sentence
        }
    }
}
