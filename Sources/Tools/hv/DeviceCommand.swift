import ArgumentParser
import DeviceModel
import Foundation
import ManagementAPI

/// `hv partition device …`: devices of a running partition, added, changed and removed while
/// it runs (synthetic devices appear to the guest as hot-added and hot-removed VMBus devices).
struct DeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device",
        abstract: "Add, change or remove a device of a running partition.",
        subcommands: [Add.self, Set.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a device: a kind (e.g. bench), or a JSON object with its kind and settings.")
        @OptionGroup var runtime: RuntimeOptions
        @Argument(help: "The partition.") var name: String
        @Argument(help: "The device, as in a configuration's \"devices\": heartbeat, or '{\"kind\": …}'.") var device: String

        func run() async throws {
            do {
                let configuration = try JSONNesting.decode(DeviceConfiguration.self, from: Self.json(device))
                let info = try await runtime.client.request(.POST, "/v1/partitions/\(name)/devices", body: configuration,
                                                            as: PartitionInfo.self)
                print("\(info.name): \(info.devices.map(\.kind).joined(separator: ", "))")
            } catch {
                throw fail(error)
            }
        }

        /// A bare kind becomes a JSON string, so both forms decode as a configuration's entry.
        static func json(_ text: String) -> String {
            text.hasPrefix("{") || text.hasPrefix("\"") ? text : "\"\(text)\""
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Give a device new settings while the partition runs.")
        @OptionGroup var runtime: RuntimeOptions
        @Argument(help: "The partition.") var name: String
        @Argument(help: "The device: its instance GUID, or its kind if the partition has one of that kind.") var device: String
        @Argument(help: "The settings, a JSON object.") var settings: String

        func run() async throws {
            do {
                let object = try JSONNesting.decode([String: JSONValue].self, from: settings)
                let info = try await runtime.client.request(.PUT, "/v1/partitions/\(name)/devices/\(device)", body: object,
                                                            as: PartitionInfo.self)
                print("\(info.name): \(device) changed")
            } catch {
                throw fail(error)
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a device from a running partition.")
        @OptionGroup var runtime: RuntimeOptions
        @Argument(help: "The partition.") var name: String
        @Argument(help: "The device: its instance GUID, or its kind if the partition has one of that kind.") var device: String

        func run() async throws {
            do {
                let info = try await runtime.client.request(.DELETE, "/v1/partitions/\(name)/devices/\(device)",
                                                            as: PartitionInfo.self)
                print("\(info.name): \(info.devices.isEmpty ? "no devices" : info.devices.map(\.kind).joined(separator: ", "))")
            } catch {
                throw fail(error)
            }
        }
    }
}
