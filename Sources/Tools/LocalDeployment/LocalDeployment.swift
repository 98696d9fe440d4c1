import DeviceRegistry
import Foundation
import GuestBuilder
import LinuxSupport
import ManagementAPI
import Privilege
import Synchronization

/// A root scheduler and a parent partition running as child processes of this one, for
/// `hv demo`, `hv bench` and the integration tests. Their logs go to files in the runtime
/// directory.
///
/// The processes live no longer than the deployment: `stop()` or deinit ends them, and so does
/// SIGINT, SIGTERM or SIGHUP sent to this process (see `TerminationHandler`).
///
/// The parent runs sandboxed (Docs/security.md), as `parentUser`: by default, when this process is
/// root, the dedicated account `hv-parent` if the host has one, else `nobody`; otherwise the
/// current user.
public final class LocalDeployment: Sendable {
    public let runtimeDirectory: String
    public let executable: String
    /// The user the parent partition runs as.
    public let parentUser: UserIdentity
    public let client: ManagementClient
    /// Extra arguments for `hv root` (e.g. `--instance-weight 10000`).
    public let rootArguments: [String]
    /// A command the root is started through (it is given the root's command line to run in its
    /// place, as `unshare … sh -c '…; exec "$@"' …` does), or empty.
    public let rootWrapper: [String]
    private let processes = Mutex<Processes>(Processes())

    private struct Processes {
        var root: Process?
        var parent: Process?
    }

    private var root: Process? { processes.withLock { $0.root } }
    private var parent: Process? { processes.withLock { $0.parent } }

    /// Starts `hv root` and `hv parent` from `executable` and waits until the parent is
    /// connected to the root.
    public static func start(executable: String, runtimeDirectory: String, rootArguments: [String] = [],
                             rootWrapper: [String] = [], parentUser: UserIdentity = .defaultParent) async throws -> LocalDeployment {
        let deployment = LocalDeployment(executable: executable, runtimeDirectory: runtimeDirectory,
                                         rootArguments: rootArguments, rootWrapper: rootWrapper, parentUser: parentUser)
        TerminationHandler.shared.register(deployment)
        try FileManager.default.createDirectory(atPath: runtimeDirectory, withIntermediateDirectories: true)
        try deployment.startRoot()
        try await deployment.waitForRoot()
        try deployment.startParent()
        try await deployment.waitForParent(connected: true)
        return deployment
    }

    init(executable: String, runtimeDirectory: String, rootArguments: [String] = [], rootWrapper: [String] = [],
         parentUser: UserIdentity = .defaultParent) {
        self.executable = executable
        self.runtimeDirectory = runtimeDirectory
        self.rootArguments = rootArguments
        self.rootWrapper = rootWrapper
        self.parentUser = parentUser
        client = ManagementClient(socketPath: RuntimeDirectory.apiSocket(in: runtimeDirectory))
    }

    /// The path of this process's executable (`hv`).
    public static var currentExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// The parent partition's process ID while it runs.
    public var parentProcessID: Int32? { parent.flatMap { $0.isRunning ? $0.processIdentifier : nil } }
    /// The root scheduler's process ID while it runs.
    public var rootProcessID: Int32? { root.flatMap { $0.isRunning ? $0.processIdentifier : nil } }

    public var rootLog: String { "\(runtimeDirectory)/root.log" }
    public var parentLog: String { "\(runtimeDirectory)/parent.log" }

    private func spawn(_ role: String, log: String, arguments: [String] = [], wrapper: [String] = []) throws -> Process {
        let process = Process()
        let command = [executable, role, "--runtime-dir", runtimeDirectory] + arguments
        let full = wrapper + command
        process.executableURL = URL(fileURLWithPath: full[0])
        process.arguments = Array(full.dropFirst())
        // Appended to: a parent started again (after a kill) keeps the log of the one before.
        if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    func startRoot() throws {
        let process = try spawn("root", log: rootLog,
                                arguments: ["--parent-user", "\(parentUser.uid):\(parentUser.gid)"] + rootArguments,
                                wrapper: rootWrapper)
        processes.withLock { $0.root = process }
    }

    /// Starts (or restarts) the parent partition process.
    public func startParent() throws {
        let process = try spawn("parent", log: parentLog, arguments: ["--user", "\(parentUser.uid):\(parentUser.gid)"])
        processes.withLock { $0.parent = process }
    }

    /// Kills the parent partition with SIGKILL and waits for it to die.
    public func killParent() {
        guard let parent = processes.withLock({ $0.parent.take() }), parent.isRunning else { return }
        kill(parent.processIdentifier, SIGKILL)
        ChildExit.wait(for: parent.processIdentifier, timeoutNanoseconds: 10_000_000_000)
    }

    /// Kills the parent partition with SIGKILL, starts a new one and waits until the root
    /// reports it connected (the chaos of `hv bench soak` and the restart tests).
    public func restartParent(timeoutSeconds: Double = 30) async throws {
        killParent()
        try await waitForParent(connected: false, timeoutSeconds: timeoutSeconds)
        try startParent()
        try await waitForParent(connected: true, timeoutSeconds: timeoutSeconds)
    }

    /// Waits until the root answers on its API socket.
    func waitForRoot(timeoutSeconds: Double = 30) async throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if let root, !root.isRunning {
                throw DeploymentError.exited("root scheduler", status: root.terminationStatus, log: tail(rootLog))
            }
            if (try? await client.request(.GET, "/v1/root", as: RootInfo.self)) != nil { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw DeploymentError.timeout("root scheduler did not answer on \(client.socketPath)", log: tail(rootLog))
    }

    /// Waits until the root reports the parent connected (or disconnected).
    public func waitForParent(connected: Bool, timeoutSeconds: Double = 30) async throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if connected, let parent, !parent.isRunning {
                throw DeploymentError.exited("parent partition", status: parent.terminationStatus, log: tail(parentLog))
            }
            if let info = try? await client.request(.GET, "/v1/root", as: RootInfo.self),
               info.parentConnected == connected { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw DeploymentError.timeout("parent partition did not \(connected ? "connect" : "disconnect")", log: tail(parentLog))
    }

    /// Loads `path`, builds its guest image if needed, and creates the partition.
    public func createPartition(configurationPath path: String, overrideName: String? = nil,
                                arguments: String? = nil) async throws -> PartitionInfo {
        var configuration = try PartitionConfiguration.load(path: path, catalog: DeviceRegistry.catalog)
        if let overrideName { configuration.name = overrideName }
        configuration = try await Self.resolveImage(configuration, configurationPath: path)
        if let arguments, case .embedded(let image, _, let imagePath) = configuration.guest {
            configuration.guest = .embedded(image: image, arguments: arguments, imagePath: imagePath)
        }
        return try await client.request(.POST, "/v1/partitions", body: configuration, as: PartitionInfo.self)
    }

    /// Creates a partition from a configuration whose guest image is already resolved
    /// (`imagePath` set, or a Linux guest with absolute paths).
    public func create(_ configuration: PartitionConfiguration) async throws -> PartitionInfo {
        try await client.request(.POST, "/v1/partitions", body: configuration, as: PartitionInfo.self)
    }

    /// Builds the Embedded Swift guest `Partitions/<name>` of the package at `packageRoot` (once
    /// per process and inputs; `GuestBuilder` keys builds by their inputs) and returns its ELF.
    public static func buildGuest(_ name: String = "Guest", packageRoot: String) async throws -> String {
        try await GuestBuilder(packageRoot: packageRoot, toolchain: try Toolchain.locate()).build(guest: name)
    }

    /// Resolves an embedded guest's image: a directory under Partitions/ is built with
    /// `GuestBuilder`; anything else is taken as a path to an ELF file.
    public static func resolveImage(_ configuration: PartitionConfiguration, configurationPath: String) async throws
        -> PartitionConfiguration
    {
        let partitionsDirectory = URL(fileURLWithPath: configurationPath).deletingLastPathComponent().standardizedFileURL
        func absolute(_ path: String) throws -> String {
            let resolved = path.hasPrefix("/") ? path : partitionsDirectory.appendingPathComponent(path).path
            guard FileManager.default.fileExists(atPath: resolved) else { throw DeploymentError.missingImage(resolved) }
            return resolved
        }
        if case .linux(let kernel, let initrd, let commandLine) = configuration.guest {
            var resolved = configuration
            resolved.guest = .linux(kernel: try absolute(kernel), initrd: try initrd.map(absolute), commandLine: commandLine)
            return resolved
        }
        guard case .embedded(let image, let arguments, _) = configuration.guest else { return configuration }
        var resolved = configuration
        let guestDirectory = partitionsDirectory.appendingPathComponent(image).path
        if FileManager.default.fileExists(atPath: "\(guestDirectory)/guest.json") {
            let root = partitionsDirectory.deletingLastPathComponent().path
            let builder = GuestBuilder(packageRoot: root, toolchain: try Toolchain.locate())
            let path = try await builder.build(guest: image)
            resolved.guest = .embedded(image: image, arguments: arguments, imagePath: path)
        } else {
            resolved.guest = .embedded(image: image, arguments: arguments, imagePath: try absolute(image))
        }
        return resolved
    }

    /// Performs an action on a partition.
    @discardableResult
    public func perform(_ action: String, on name: String) async throws -> PartitionInfo {
        try await client.request(.POST, "/v1/partitions/\(name)/actions", body: PartitionAction(action: action),
                                 as: PartitionInfo.self)
    }

    /// Deletes a partition (the root stops it first if it runs).
    public func delete(_ name: String) async throws {
        try await client.deletePartition(name)
    }

    public func info(_ name: String) async throws -> PartitionInfo {
        try await client.request(.GET, "/v1/partitions/\(name)", as: PartitionInfo.self)
    }

    public func console(_ name: String, lines: Int = 500) async throws -> [String] {
        try await client.request(.GET, "/v1/partitions/\(name)/console?lines=\(lines)", as: ConsoleOutput.self).lines
    }

    /// Waits until a console line of `name` contains `text`; returns that line.
    public func waitForConsole(_ name: String, containing text: String, timeoutSeconds: Double = 60) async throws -> String {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if let line = try await console(name, lines: 2000).last(where: { $0.contains(text) }) { return line }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw DeploymentError.timeout("\(name) never printed \"\(text)\"", log: (try? await console(name, lines: 30))?
            .joined(separator: "\n") ?? "")
    }

    /// Waits until partition `name` reaches `state`.
    public func waitForState(_ name: String, _ state: String, timeoutSeconds: Double = 30) async throws -> PartitionInfo {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            let current = try await info(name)
            if current.state == state { return current }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw DeploymentError.timeout("\(name) did not become \(state)", log: "")
    }

    /// Stops both processes (SIGTERM, then SIGKILL after a grace period), the parent first.
    /// Safe to call from any thread, more than once. If a termination signal is being handled,
    /// this waits for the handler to end the process instead.
    public func stop() {
        TerminationHandler.shared.waitIfTerminating()
        stopProcesses()
    }

    func stopProcesses() {
        let running = processes.withLock { [$0.parent.take(), $0.root.take()] }.compactMap { $0 }
        for process in running where process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning && !ChildExit.hasExited(process.processIdentifier) && Date() < deadline {
                usleep(20_000)
            }
            if !ChildExit.hasExited(process.processIdentifier) {
                kill(process.processIdentifier, SIGKILL)
                ChildExit.wait(for: process.processIdentifier, timeoutNanoseconds: 10_000_000_000)
            }
        }
        TerminationHandler.shared.unregister(self)
    }

    deinit { stop() }

    func tail(_ path: String, lines: Int = 20) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "" }
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }
}

/// Why a local deployment failed.
public enum DeploymentError: Error, CustomStringConvertible {
    case exited(String, status: Int32, log: String)
    case timeout(String, log: String)
    case missingImage(String)

    public var description: String {
        switch self {
        case .exited(let what, let status, let log):
            "The \(what) exited with status \(status):\n\(log)"
        case .timeout(let what, let log):
            "Timed out: \(what).\n\(log)"
        case .missingImage(let path):
            "Guest image \(path) does not exist: fix the \"image\" field of the partition configuration."
        }
    }
}
