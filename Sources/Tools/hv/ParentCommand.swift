import ArgumentParser
import DeviceRegistry
import Dispatch
import Foundation
import Glibc
import Logging
import ManagementAPI
import ParentPartition

struct ParentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parent",
        abstract: "Run the parent partition: maps child memory and hosts the VMBus server and the VSPs.")

    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "Log level (trace, debug, info, notice, warning, error).")
    var logLevel: Logger.Level = .info

    func run() async throws {
        let logger = makeLogger("hv.parent", level: logLevel)
        let service = ParentPartitionService(socketPath: RuntimeDirectory.parentSocket(in: runtime.runtimeDir),
                                             deviceTypes: DeviceRegistry.devices, logger: logger)
        let signals = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number)
            source.setEventHandler { service.stop() }
            source.resume()
            return source
        }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                service.run()
                done.resume()
            }
        }
        // A real use of the sources: without it the optimizer may release them at once, and
        // SIGTERM would then go unheard.
        for source in signals { source.cancel() }
        logger.info("parent partition stopped")
    }
}
