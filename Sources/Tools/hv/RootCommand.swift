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
    @Option(help: ArgumentHelp("Keep the parent partition's threads on these host processors (e.g. 0 or 0-1), apart from every virtual processor.",
                               valueName: "cpu-list"))
    var parentProcessors: String?
    @Option(help: "How the root's partitions together weigh against other work on the host, 1-10000 (100 = one busy thread; default: 100 per host processor).")
    var instanceWeight: Int?
    @Flag(help: "Leave every thread where it is: no control groups, partitions run uncontrolled.")
    var noProcessorControls = false

    func run() async throws {
        if let instanceWeight, !(1...10_000).contains(instanceWeight) {
            throw ValidationError("--instance-weight must be between 1 and 10000, not \(instanceWeight).")
        }
        let logger = makeLogger("hv.root", level: logLevel)
        do {
            let parent = try parentProcessors.map { text throws(ValidationError) in try CPUListArgument.parse(text) }
            let options = ProcessorControlOptions(parentProcessors: parent, instanceWeight: instanceWeight,
                                                  enabled: !noProcessorControls)
            let parentIdentity = try parentUser.map(UserIdentity.resolve) ?? .defaultParent
            let group = try apiGroup.map(Self.group)
            try await RootService(runtimeDirectory: runtime.runtimeDir, catalog: DeviceRegistry.catalog, logger: logger,
                                  processorControls: options, parentUser: parentIdentity, apiGroup: group).run()
        } catch let error as ValidationError {
            throw error
        } catch {
            throw fail(error)
        }
    }

    /// A group by name or number.
    /// Refuses (gid_t)-1, which chown(2) reads as "leave the group as it is": the API socket
    /// would then open to the root's own primary group instead.
    static func group(_ text: String) throws -> gid_t {
        let gid: gid_t
        if let number = gid_t(text) {
            gid = number
        } else {
            guard let entry = getgrnam(text) else { throw ValidationError("No group named \(text).") }
            gid = entry.pointee.gr_gid
        }
        guard gid != gid_t.max else { throw ValidationError("\(text) is not a group: \(gid_t.max) means none to chown(2).") }
        return gid
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// A host processor list as the kernel writes one: "0-3,8".
enum CPUListArgument {
    static func parse(_ text: String) throws(ValidationError) -> [Int] {
        var processors: [Int] = []
        for item in text.split(separator: ",") {
            let bounds = item.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
            guard (1...2).contains(bounds.count), let low = bounds.first ?? nil, let high = bounds.last ?? nil,
                  low >= 0, low <= high, high < 8192 else {
                throw ValidationError("\"\(text)\" is not a processor list such as 0 or 0-3,8.")
            }
            processors += Array(low...high)
        }
        guard !processors.isEmpty else { throw ValidationError("The processor list is empty.") }
        return Array(Set(processors)).sorted()
    }
}
