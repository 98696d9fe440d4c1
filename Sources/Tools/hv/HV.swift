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
                      DemoCommand.self, BenchCommand.self])
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
