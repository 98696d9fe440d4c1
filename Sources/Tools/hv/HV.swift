import ArgumentParser
import Foundation
import Logging
import ManagementAPI

@main
struct HV: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hv",
        abstract: "A microkernelized partition hypervisor modeled on Hyper-V, on Linux KVM.",
        version: hypervisorVersion,
        subcommands: [RootCommand.self, ParentCommand.self, PartitionCommand.self, SwitchCommand.self, DiskCommand.self,
                      DemoCommand.self, BenchCommand.self, FuzzCommand.self])

    /// ArgumentParser's entry point, with one step first: `hv parent` enters its sandbox here,
    /// while the process has one thread (an async main starts on the main thread alone, and the
    /// first hop to the concurrent executor starts others), because Landlock and per-thread
    /// credentials only reach the threads started after them.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if let parent = command as? ParentCommand { try parent.enterSandbox() }
            if var asynchronous = command as? any AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// Options every command that talks to the root shares.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "Directory holding the root's sockets (default: $HV_RUNTIME_DIR, /run/hv as root, else a per-user directory).")
    var runtimeDir: String = RuntimeDirectory.standard

    var client: ManagementClient { ManagementClient(socketPath: RuntimeDirectory.apiSocket(in: runtimeDir)) }
}

/// Prints `error` as one sentence and exits with status 1.
func fail(_ error: any Error) -> ExitCode {
    FileHandle.standardError.write(Data("hv: \(error)\n".utf8))
    return .failure
}

func makeLogger(_ label: String, level: Logger.Level) -> Logger {
    LoggingSystem.bootstrap { name in
        var handler = StreamLogHandler.standardError(label: name)
        handler.logLevel = level
        return handler
    }
    var logger = Logger(label: label)
    logger.logLevel = level
    return logger
}
