import ArgumentParser
import DeviceRegistry
import Logging
import RootScheduler

struct RootCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "root",
        abstract: "Run the root scheduler: owns /dev/kvm, creates and runs child partitions, serves the management API.")

    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "Log level (trace, debug, info, notice, warning, error).")
    var logLevel: Logger.Level = .info

    func run() async throws {
        let logger = makeLogger("hv.root", level: logLevel)
        do {
            try await RootService(runtimeDirectory: runtime.runtimeDir, catalog: DeviceRegistry.catalog, logger: logger).run()
        } catch {
            throw fail(error)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
