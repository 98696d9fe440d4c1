import ArgumentParser
import DeviceRegistry
import Glibc
import Logging
import Privilege
import RootScheduler

struct RootCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "root",
        abstract: "Run the root scheduler: owns /dev/kvm, creates and runs child partitions, serves the management API.")

    @OptionGroup var runtime: RuntimeOptions
    @Option(help: ArgumentHelp("The user the parent partition runs as (a name, UID or UID:GID): the only one, besides this process's, that may connect to parent.sock (default: hv-parent or nobody as root, else the current user).", valueName: "user"))
    var parentUser: String?
    @Option(help: ArgumentHelp("A group whose members may use the management API too; their requests open host files with their own rights.", valueName: "group"))
    var apiGroup: String?
    @Option(help: "Log level (trace, debug, info, notice, warning, error).")
    var logLevel: Logger.Level = .info

    func run() async throws {
        let logger = makeLogger("hv.root", level: logLevel)
        do {
            let parent = try parentUser.map(UserIdentity.resolve) ?? .defaultParent
            let group = try apiGroup.map(Self.group)
            try await RootService(runtimeDirectory: runtime.runtimeDir, catalog: DeviceRegistry.catalog, logger: logger,
                                  parentUser: parent, apiGroup: group).run()
        } catch {
            throw fail(error)
        }
    }

    /// A group by name or number.
    static func group(_ text: String) throws -> gid_t {
        if let number = gid_t(text) { return number }
        guard let entry = getgrnam(text) else { throw ValidationError("No group named \(text).") }
        return entry.pointee.gr_gid
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
