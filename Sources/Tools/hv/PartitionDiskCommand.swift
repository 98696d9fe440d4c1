import ArgumentParser
import DeviceModel
import Foundation
import ManagementAPI

/// `hv partition disk add|remove`: a disk of a running partition's SCSI controller, hot-added or
/// hot-removed. Sugar over the device API: the controller's settings are read, the disk added to
/// or taken from its `disks`, and the settings sent back (`PUT /v1/partitions/{name}/devices/{device}`);
/// the guest sees the bus change and rescans it.
struct PartitionDiskCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disk", abstract: "Add a disk to, or remove one from, a running partition's SCSI controller.",
        subcommands: [Add.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Hot-add a disk image at a LUN.")
        @OptionGroup var runtime: RuntimeOptions
        @Argument(help: "The partition.") var name: String
        @Argument(help: "The disk image (absolute path, or relative to the current directory).") var path: String
        @Option(help: "The LUN (default: the lowest free one).") var lun: Int?
        @Option(help: "The SCSI target, 0 or 1.") var target = 0
        @Flag(help: "Attach it read-only.") var readOnly = false
        @Flag(help: "Serve it with O_DIRECT.") var direct = false
        @Option(help: "The controller: its instance GUID (when the partition has several).") var device: String?

        func run() async throws {
            do {
                let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
                try await PartitionDiskCommand.change(name, device: device, runtime: runtime) { disks in
                    let taken = Set(disks.compactMap { disk -> Int? in
                        guard case .object(let object) = disk, case .number(let number)? = object["lun"] else { return nil }
                        let diskTarget: Double = if case .number(let t)? = object["target"] { t } else { 0 }
                        return Int(diskTarget) == target ? Int(number) : nil
                    })
                    guard let chosen = lun ?? (0...254).first(where: { !taken.contains($0) }) else {
                        throw ValidationError("target \(target) has no free LUN")
                    }
                    var disk: [String: JSONValue] = ["path": .string(absolute), "lun": .number(Double(chosen))]
                    if target != 0 { disk["target"] = .number(Double(target)) }
                    if readOnly { disk["readOnly"] = .bool(true) }
                    if direct { disk["direct"] = .bool(true) }
                    print("\(name): adding \(absolute) at target \(target) LUN \(chosen)")
                    return disks + [.object(disk)]
                }
            } catch let error as ValidationError {
                throw error
            } catch {
                throw fail(error)
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Hot-remove a disk, named by its LUN or its image path.")
        @OptionGroup var runtime: RuntimeOptions
        @Argument(help: "The partition.") var name: String
        @Argument(help: "The disk: its LUN, or its image path.") var disk: String
        @Option(help: "The SCSI target of a LUN.") var target = 0
        @Option(help: "The controller: its instance GUID (when the partition has several).") var device: String?

        func run() async throws {
            do {
                try await PartitionDiskCommand.change(name, device: device, runtime: runtime) { disks in
                    let kept = disks.filter { entry in
                        guard case .object(let object) = entry else { return true }
                        let lun: Int? = if case .number(let n)? = object["lun"] { Int(n) } else { nil }
                        let diskTarget: Int = if case .number(let t)? = object["target"] { Int(t) } else { 0 }
                        let path: String? = if case .string(let p)? = object["path"] { p } else { nil }
                        let matches = (Int(disk) != nil && lun == Int(disk) && diskTarget == target) || path == disk
                        return !matches
                    }
                    guard kept.count < disks.count else { throw ValidationError("\(name) has no disk \(disk)") }
                    return kept
                }
                print("\(name): removed \(disk)")
            } catch let error as ValidationError {
                throw error
            } catch {
                throw fail(error)
            }
        }
    }

    /// Reads the controller's settings, lets `edit` change its disks, and sends them back.
    static func change(_ name: String, device: String?, runtime: RuntimeOptions,
                       _ edit: ([JSONValue]) throws -> [JSONValue]) async throws {
        let info = try await runtime.client.request(.GET, "/v1/partitions/\(name)", as: PartitionInfo.self)
        let controllers = info.devices.filter { $0.kind == "scsi" && (device == nil || $0.instance == device) }
        guard controllers.count == 1, let controller = controllers.first else {
            throw ValidationError(controllers.isEmpty
                ? "\(name) has no SCSI controller\(device.map { " \($0)" } ?? ""): add one with `hv partition device add \(name) '{\"kind\": \"scsi\", \"disks\": []}'`"
                : "\(name) has \(controllers.count) SCSI controllers: name one with --device")
        }
        guard case .object(var settings)? = controller.settings else {
            throw ValidationError("the root did not report the controller's settings")
        }
        let disks: [JSONValue] = if case .array(let list)? = settings["disks"] { list } else { [] }
        settings["disks"] = .array(try edit(disks))
        _ = try await runtime.client.request(.PUT, "/v1/partitions/\(name)/devices/\(controller.instance)", body: settings,
                                             as: PartitionInfo.self)
    }
}
