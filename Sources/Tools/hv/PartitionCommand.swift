import ArgumentParser
import DeviceRegistry
import Foundation
import LocalDeployment
import ManagementAPI

struct PartitionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "partition",
        abstract: "Manage child partitions through the root scheduler's API.",
        subcommands: [Create.self, Action.Start.self, Action.Pause.self, Action.Resume.self, Action.Stop.self,
                      Action.Shutdown.self, Delete.self, List.self, Show.self, Console.self, Set.self, Stats.self,
                      DeviceCommand.self, PartitionDiskCommand.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a partition from a configuration file (building its guest).")
        @OptionGroup var runtime: RuntimeOptions
        @Argument(help: "A partition configuration, e.g. Partitions/alpha.json.") var file: String
        @Option(help: "Use this name instead of the file's.") var name: String?
        @Flag(help: "Start it once created.") var start = false
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            do {
                var configuration = try PartitionConfiguration.load(path: file, catalog: DeviceRegistry.catalog)
                if let name { configuration.name = name }
                configuration = try await LocalDeployment.resolveImage(configuration, configurationPath: file)
                var info = try await runtime.client.request(.POST, "/v1/partitions", body: configuration, as: PartitionInfo.self)
                if start {
                    info = try await runtime.client.request(.POST, "/v1/partitions/\(info.name)/actions",
                                                            body: PartitionAction(action: "start"), as: PartitionInfo.self)
                }
                print(json ? encodeJSON(info) : "\(info.name): \(info.state)")
            } catch {
                throw fail(error)
            }
        }
    }

    enum Action {
        static func perform(_ action: String, _ name: String, _ runtime: RuntimeOptions) async throws {
            do {
                var info = try await runtime.client.request(.POST, "/v1/partitions/\(name)/actions",
                                                            body: PartitionAction(action: action), as: PartitionInfo.self)
                if action == "shutdown" {
                    // The guest powers itself off once its shutdown service has answered.
                    let deadline = Date().addingTimeInterval(30)
                    while !["stopped", "crashed"].contains(info.state) && Date() < deadline {
                        try await Task.sleep(for: .milliseconds(100))
                        info = try await runtime.client.request(.GET, "/v1/partitions/\(name)", as: PartitionInfo.self)
                    }
                }
                print("\(info.name): \(info.state)" + (info.reason.map { " (\($0))" } ?? ""))
            } catch {
                throw fail(error)
            }
        }

        struct Start: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Start a created partition.")
            @OptionGroup var runtime: RuntimeOptions
            @Argument var name: String
            func run() async throws { try await Action.perform("start", name, runtime) }
        }
        struct Pause: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Pause a running partition's processors.")
            @OptionGroup var runtime: RuntimeOptions
            @Argument var name: String
            func run() async throws { try await Action.perform("pause", name, runtime) }
        }
        struct Resume: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Resume a paused partition.")
            @OptionGroup var runtime: RuntimeOptions
            @Argument var name: String
            func run() async throws { try await Action.perform("resume", name, runtime) }
        }
        struct Stop: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Stop a partition now and release its memory and threads.")
            @OptionGroup var runtime: RuntimeOptions
            @Argument var name: String
            func run() async throws { try await Action.perform("stop", name, runtime) }
        }
        struct Shutdown: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Ask the guest to shut down through its shutdown integration service.")
            @OptionGroup var runtime: RuntimeOptions
            @Argument var name: String
            func run() async throws { try await Action.perform("shutdown", name, runtime) }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop a partition if needed and forget it.")
        @OptionGroup var runtime: RuntimeOptions
        @Argument var name: String

        func run() async throws {
            do {
                try await runtime.client.deletePartition(name)
                print("\(name): deleted")
            } catch {
                throw fail(error)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List partitions.")
        @OptionGroup var runtime: RuntimeOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            do {
                let partitions = try await runtime.client.request(.GET, "/v1/partitions", as: [PartitionInfo].self)
                if json {
                    print(encodeJSON(partitions))
                    return
                }
                let rows = partitions.map { info in
                    [info.name, info.state, "\(info.processors)", "\(info.memoryMiB) MiB",
                     info.devices.map(\.kind).joined(separator: ","), info.reason ?? ""]
                }
                print(Table(headers: ["NAME", "STATE", "VPS", "MEMORY", "DEVICES", "REASON"], rows: rows).rendered)
            } catch {
                throw fail(error)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one partition.")
        @OptionGroup var runtime: RuntimeOptions
        @Argument var name: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            do {
                let info = try await runtime.client.request(.GET, "/v1/partitions/\(name)", as: PartitionInfo.self)
                if json {
                    print(encodeJSON(info))
                    return
                }
                print("name:       \(info.name) (id \(info.id))")
                print("state:      \(info.state)" + (info.reason.map { " (\($0))" } ?? ""))
                print("processors: \(info.processors)")
                print("memory:     \(info.memoryMiB) MiB")
                print("devices:    \(info.devices.isEmpty ? "-" : info.devices.map(\.kind).joined(separator: ", "))")
                for device in info.devices { print("  \(device.kind): \(device.instance)") }
                print("uptime:     \(String(format: "%.1f", info.uptimeSeconds)) s")
                if let cpu = info.cpu { print("cpu:        " + StatisticsText.controls(cpu)) }
                for (key, value) in info.status.sorted(by: { $0.key < $1.key }) {
                    print("\(key + ":") \(value)")
                }
            } catch {
                throw fail(error)
            }
        }
    }

    struct Console: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print what a partition wrote to its console or debug port.")
        @OptionGroup var runtime: RuntimeOptions
        @Argument var name: String
        @Option(help: "How many of the last lines.") var lines = 200

        func run() async throws {
            do {
                let output = try await runtime.client.request(.GET, "/v1/partitions/\(name)/console?lines=\(lines)",
                                                              as: ConsoleOutput.self)
                for line in output.lines { print(line) }
            } catch {
                throw fail(error)
            }
        }
    }
}

func encodeJSON(_ value: some Encodable) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
}

/// A plain-text table with left-aligned columns.
struct Table {
    var headers: [String]
    var rows: [[String]]

    var rendered: String {
        let all = [headers] + rows
        let widths = headers.indices.map { column in all.map { $0.count > column ? $0[column].count : 0 }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
