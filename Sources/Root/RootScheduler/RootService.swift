import DeviceModel
import Foundation
import Hummingbird
import KVM
import LinuxSupport
import Logging
import ManagementAPI

/// The `hv root` process: the scheduler, the parent link and the management API, until
/// SIGINT or SIGTERM; then every partition is stopped and the sockets removed.
public struct RootService {
    public let runtimeDirectory: String
    public let logger: Logger
    let catalog: DeviceCatalog
    let processorControls: ProcessorControlOptions

    /// - Parameters:
    ///   - catalog: the device types partitions may use (`DeviceRegistry.catalog`).
    ///   - processorControls: how partitions' processor controls are enforced (Docs/scheduling.md).
    public init(runtimeDirectory: String, catalog: DeviceCatalog, logger: Logger,
                processorControls: ProcessorControlOptions = ProcessorControlOptions()) {
        self.runtimeDirectory = runtimeDirectory
        self.catalog = catalog
        self.logger = logger
        self.processorControls = processorControls
    }

    public func run() async throws {
        do {
            try FileManager.default.createDirectory(atPath: runtimeDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw RootServiceError.runtimeDirectory(runtimeDirectory, "\(error.localizedDescription)")
        }
        let apiSocket = RuntimeDirectory.apiSocket(in: runtimeDirectory)
        let parentSocket = RuntimeDirectory.parentSocket(in: runtimeDirectory)
        if (try? await ManagementClient(socketPath: apiSocket).request(.GET, "/v1/root", as: RootInfo.self)) != nil {
            throw RootServiceError.alreadyRunning(apiSocket)
        }
        let scheduler = try RootScheduler(catalog: catalog, logger: logger, processorControls: processorControls)
        let link: ParentLink
        do {
            link = try ParentLink(directory: scheduler, socketPath: parentSocket)
            scheduler.link.withLock { $0 = link }
            try link.start()
        } catch {
            scheduler.processors.shutdown()
            throw error
        }
        unlink(apiSocket)
        let application = ManagementServer.makeApplication(scheduler: scheduler, socketPath: apiSocket, logger: logger)
        logger.info("root scheduler \(hypervisorVersion) listening on \(apiSocket) (parent link \(parentSocket))")
        defer {
            scheduler.stopAll()
            scheduler.processors.shutdown()
            link.shutdown()
            unlink(apiSocket)
            unlink(parentSocket)
            logger.info("root scheduler stopped")
        }
        try await application.runService()
    }
}

/// Why the root scheduler could not start.
public enum RootServiceError: Error, CustomStringConvertible {
    case kvm(KVMError)
    case alreadyRunning(String)
    case runtimeDirectory(String, String)
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
        case .runtimeDirectory(let path, let reason):
            return "Cannot create the runtime directory \(path) (\(reason)): choose another with --runtime-dir."
        case .processorControls(let sentence):
            return sentence
        }
    }
}
