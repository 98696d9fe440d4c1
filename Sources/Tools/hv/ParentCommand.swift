import ArgumentParser
import DeviceRegistry
import Foundation
import Glibc
import LinuxSupport
import Logging
import ManagementAPI
import ParentPartition
import Privilege

/// `hv parent`. It is synchronous on purpose: after the sandbox it runs on plain threads only
/// (the service's, a signal thread), never on Dispatch's pool, whose monitor reads
/// /proc/<tid>/stat of each worker and crashes the process when the sandbox denies it.
struct ParentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parent",
        abstract: "Run the parent partition: maps child memory and hosts the VMBus server and the VSPs.",
        discussion: """
            The parent runs sandboxed (Docs/security.md): as an unprivileged user, with no capabilities, no file \
            access (Landlock) and a system-call allow-list (seccomp), holding only the descriptors the root hands it.
            """)

    @OptionGroup var runtime: RuntimeOptions
    @Option(help: ArgumentHelp("The user to run as when started as root (a name, UID or UID:GID; default: hv-parent, else nobody).", valueName: "user"))
    var user: String?
    @Flag(help: "Run without the sandbox (for debugging a device back end; never in production).")
    var noSandbox = false
    @Option(help: "Log level (trace, debug, info, notice, warning, error).")
    var logLevel: Logger.Level = .info

    // The sandbox's self-test (`IntegrationTests`): enter the sandbox, try what a compromised
    // parent would, print the outcomes as JSON lines, exit.
    @Flag(help: .hidden) var probeSandbox = false
    @Option(help: .hidden) var probeTarget: Int32?
    @Option(help: .hidden) var probeSocket: String?
    @Option(help: .hidden) var probeForbidden: [String] = []

    /// What entering the sandbox reported (or why the parent runs without one).
    // SAFETY: written once by `enterSandbox` on the main thread while it is the only thread, and
    // only read after that.
    nonisolated(unsafe) static var sandbox: Result<ParentSandbox.Report, PrivilegeError>?

    /// Enters the sandbox. Called by `HV.main` while the process still has one thread, before
    /// anything else runs.
    func enterSandbox() throws {
        guard !noSandbox else { return }
        let identity = try user.map(UserIdentity.resolve) ?? .defaultParent
        do throws(PrivilegeError) {
            Self.sandbox = .success(try ParentSandbox.enter(as: identity))
        } catch {
            throw ValidationError("Cannot sandbox the parent partition: \(error)")
        }
    }

    func run() throws {
        // SIGINT and SIGTERM stay blocked in every thread (threads inherit the mask) and are taken
        // by the signal thread below, so no handler runs on an arbitrary thread.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        sigaddset(&stopSignals, SIGINT)
        sigaddset(&stopSignals, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &stopSignals, nil)
        if probeSandbox {
            for outcome in SandboxProbe.run(target: probeTarget ?? getppid(), forbiddenFiles: probeForbidden,
                                            socketPath: probeSocket) {
                if let line = try? JSONEncoder().encode(outcome) { print(String(decoding: line, as: UTF8.self)) }
            }
            return
        }
        let logger = makeLogger("hv.parent", level: logLevel)
        switch Self.sandbox {
        case .success(let report): logger.info("sandboxed: \(report)")
        case .failure(let error): logger.error("not sandboxed: \(error)")
        case nil: logger.warning("running without a sandbox (--no-sandbox)")
        }
        // The root may run as root or as the user this process was started as.
        let startedAs = (try? Self.sandbox?.get().formerUser) ?? geteuid()
        let service = ParentPartitionService(socketPath: RuntimeDirectory.parentSocket(in: runtime.runtimeDir),
                                             deviceTypes: DeviceRegistry.devices, logger: logger,
                                             rootUsers: [0, startedAs])
        let waited = stopSignals
        _ = try OSThread.spawn(name: "signals") {
            var signals = waited
            var received: Int32 = 0
            while sigwait(&signals, &received) != 0 {}
            service.stop()
        }
        service.run()
        logger.info("parent partition stopped")
        // The signal thread may still wait: end the process rather than join it.
        Glibc.exit(0)
    }
}
