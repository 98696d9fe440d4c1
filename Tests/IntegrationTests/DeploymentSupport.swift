import DeviceModel
import Foundation
import GuestBuilder
import KVM
import LocalDeployment
import ManagementAPI

/// A root and a parent started from the `hv` executable built beside the test bundle, with a
/// scratch directory for their sockets, logs and partition configurations.
struct TestDeployment {
    let deployment: LocalDeployment
    let directory: String
    let image: String

    static var hvExecutable: String {
        let bundle = URL(fileURLWithPath: LocalDeployment.currentExecutable).deletingLastPathComponent()
        return bundle.appendingPathComponent("hv").path
    }

    static func start(_ label: String, rootWrapper: [String] = []) async throws -> TestDeployment {
        let directory = NSTemporaryDirectory() + "hv-test-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let image = try await GuestBuilder.forCurrentPackage().build()
        let deployment = try await LocalDeployment.start(executable: hvExecutable, runtimeDirectory: directory,
                                                         rootWrapper: rootWrapper)
        return TestDeployment(deployment: deployment, directory: directory, image: image)
    }

    /// Writes a configuration for the probe guest and creates the partition.
    @discardableResult
    func create(_ name: String, processors: Int = 1, memoryMiB: Int = 32, arguments: String = "mode=probe iterations=20",
                devices: [DeviceConfiguration] = [], cpu: ProcessorSettings? = nil) async throws -> PartitionInfo {
        let configuration = PartitionConfiguration(
            name: name, processors: processors, memoryMiB: memoryMiB,
            guest: .embedded(image: image, arguments: arguments, imagePath: nil), devices: devices, cpu: cpu)
        let path = "\(directory)/\(name).json"
        try JSONEncoder().encode(configuration).write(to: URL(fileURLWithPath: path))
        return try await deployment.createPartition(configurationPath: path)
    }

    func rootInfo() async throws -> RootInfo {
        try await deployment.client.request(.GET, "/v1/root", as: RootInfo.self)
    }

    /// Threads of the root process, and its open descriptors that belong to partitions: KVM VMs
    /// and vCPUs, memfds and eventfds. Sockets are left out: management connections come and go
    /// while the count is taken (the request that finds the root's process ID is one of them).
    func rootResources() async throws -> (threads: Int, descriptors: Int) {
        let pid = try await rootInfo().processID
        let threads = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").count
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").filter { entry in
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(entry)") else {
                return false
            }
            return target.hasPrefix("anon_inode:kvm") || target.hasPrefix("/memfd:") || target == "anon_inode:[eventfd]"
        }
        return (threads, descriptors.count)
    }

    func stop() {
        deployment.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
