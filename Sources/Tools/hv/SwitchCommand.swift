import ArgumentParser
import Foundation
import ManagementAPI

/// `hv switch …`: the virtual switches of the parent partition, named as Hyper-V names them.
struct SwitchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switch",
        abstract: "Create, list and delete virtual switches (private, internal, external).",
        subcommands: [Create.self, List.self, Delete.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a virtual switch: by name and options, or from a JSON file (e.g. Partitions/lab.switch.json).")
        @OptionGroup var runtime: RuntimeOptions
        @Argument(help: "The switch's name, or a switch configuration file ending in .json.") var name: String
        @Option(help: "private (children only), internal (children and a host TAP), external (children and a host interface's network).")
        var kind: String?
        @Option(help: "internal: the TAP's name (default hv-NAME); external: the host interface to bridge to.")
        var hostInterface: String?
        @Option(help: "MTU, 576-9000 (default 1500).") var mtu: Int?
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            do {
                var configuration: SwitchConfiguration
                if name.hasSuffix(".json") {
                    configuration = try SwitchConfiguration.load(path: name)
                    if let kind { configuration.kind = kind }
                } else {
                    guard let kind else { throw ValidationError("--kind private|internal|external is required") }
                    configuration = SwitchConfiguration(name: name, kind: kind)
                }
                if let hostInterface { configuration.hostInterface = hostInterface }
                if let mtu { configuration.mtu = mtu }
                let info = try await runtime.client.request(.POST, "/v1/switches", body: configuration, as: SwitchInfo.self)
                print(json ? encodeJSON(info) : "\(info.name): \(info.kind), MTU \(info.mtu)"
                      + (info.hostInterface.isEmpty ? "" : ", host interface \(info.hostInterface)"))
            } catch let error as ValidationError {
                throw error
            } catch {
                throw fail(error)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the virtual switches and the NICs plugged into them.")
        @OptionGroup var runtime: RuntimeOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            do {
                let switches = try await runtime.client.request(.GET, "/v1/switches", as: [SwitchInfo].self)
                if json {
                    print(encodeJSON(switches))
                    return
                }
                let rows = switches.map { info in
                    [info.name, info.kind, "\(info.mtu)", info.hostInterface.isEmpty ? "-" : info.hostInterface,
                     info.ports.isEmpty ? "-" : info.ports.joined(separator: ",")]
                }
                print(Table(headers: ["NAME", "KIND", "MTU", "HOST INTERFACE", "NICS"], rows: rows).rendered)
            } catch {
                throw fail(error)
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a virtual switch no NIC uses.")
        @OptionGroup var runtime: RuntimeOptions
        @Argument var name: String

        func run() async throws {
            do {
                let response = try await runtime.client.send(.DELETE, "/v1/switches/\(name)")
                guard (200..<300).contains(response.status) else {
                    throw ManagementClientError.api(ManagementError(status: response.status, body: response.body))
                }
                print("\(name): deleted")
            } catch {
                throw fail(error)
            }
        }
    }
}
