// swift-tools-version:6.2
//
// A microkernelized partition hypervisor modeled on Hyper-V, on Linux KVM.
// Module layering (lower layers never import higher ones):
//
//   shared with Embedded Swift guests:  HyperV  <-  VMBusProtocol  <-  ICProtocol, BenchProtocol
//   host, bottom:                       CLinux, CKVM  <-  LinuxSupport  <-  KVM, GuestMemory
//   root scheduler:                     HypervisorInterface  <-  Partition  <-  RootScheduler
//   parent partition:                   VMBusServer, VMBusHost  <-  IntegrationVSP, BenchVSP  <-  ParentPartition
//                                       CDiskIO  <-  DiskBackend (disk images, io_uring / thread-pool engines)
//   devices:                            StorageProtocol (shared with guests)  <-  StorageVSP
//   between processes:                  ControlProtocol (root <-> parent), ManagementAPI (users <-> root)
//   tools:                              GuestBuilder, Bench, hv (executable)
import PackageDescription

/// Modules that compile both for the host and as Embedded Swift for guests.
let embeddedSafe: [SwiftSetting] = [
    .treatWarning("EmbeddedRestrictions", as: .error),
    .enableUpcomingFeature("ExistentialAny"),
]
let host: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "hv",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "hv", targets: ["hv"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
    ],
    targets: [
        // MARK: Shared with Embedded Swift guests (no Foundation, no existentials, typed throws only).
        .target(name: "HyperV", swiftSettings: embeddedSafe),
        .target(name: "VMBusProtocol", dependencies: ["HyperV"], swiftSettings: embeddedSafe),
        .target(name: "ICProtocol", dependencies: ["VMBusProtocol"], swiftSettings: embeddedSafe),
        .target(name: "BenchProtocol", dependencies: ["VMBusProtocol"], swiftSettings: embeddedSafe),
        .target(
            name: "StorageProtocol", dependencies: ["HyperV", "VMBusProtocol"],
            path: "Sources/Devices/Storage/Protocol", swiftSettings: embeddedSafe),

        // MARK: Host, bottom layer.
        .target(name: "CLinux"),
        .target(name: "CKVM"),
        .target(
            name: "LinuxSupport",
            dependencies: ["CLinux", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: host),
        .target(name: "KVM", dependencies: ["CKVM", "LinuxSupport"], swiftSettings: host),
        .target(name: "GuestMemory", dependencies: ["LinuxSupport"], swiftSettings: host),
        .target(name: "CDiskIO", path: "Sources/Platform/CDiskIO"),

        // MARK: Linux direct boot (used by the root for Linux partitions) and legacy devices (parent).
        .target(name: "LinuxBoot", dependencies: ["HyperV"], swiftSettings: host),
        .target(name: "ACPI", dependencies: ["HyperV"], swiftSettings: host),
        .target(name: "LegacyDevices", dependencies: ["HyperV"], swiftSettings: host),

        // MARK: Root scheduler.
        .target(
            name: "HypervisorInterface",
            dependencies: ["HyperV", "GuestMemory", "LinuxSupport"],
            swiftSettings: host),
        .target(
            name: "Partition",
            dependencies: ["KVM", "GuestMemory", "HyperV", "HypervisorInterface", "LinuxSupport", "LinuxBoot", "ACPI",
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: host),
        .target(
            name: "ControlProtocol",
            dependencies: ["LinuxSupport", "HyperV"],
            swiftSettings: host),
        .target(
            name: "ManagementAPI",
            dependencies: [.product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio")],
            swiftSettings: host),
        .target(
            name: "RootScheduler",
            dependencies: ["Partition", "ControlProtocol", "ManagementAPI", "LinuxSupport",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: host),

        // MARK: Parent partition.
        .target(name: "VMBusServer", dependencies: ["VMBusProtocol"], swiftSettings: host),
        .target(
            name: "VMBusHost",
            dependencies: ["VMBusProtocol", "GuestMemory", "LinuxSupport", "HyperV",
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: host),
        .target(
            name: "IntegrationVSP",
            dependencies: ["VMBusHost", "ICProtocol", .product(name: "Logging", package: "swift-log")],
            swiftSettings: host),
        .target(
            name: "BenchVSP",
            dependencies: ["VMBusHost", "BenchProtocol", .product(name: "Logging", package: "swift-log")],
            swiftSettings: host),
        .target(
            name: "DiskBackend",
            dependencies: ["CDiskIO", "GuestMemory", "LinuxSupport",
                           .product(name: "SystemPackage", package: "swift-system")],
            path: "Sources/Parent/DiskBackend", swiftSettings: host),
        .target(
            name: "StorageVSP",
            dependencies: ["StorageProtocol", "VMBusProtocol", "HyperV"],
            path: "Sources/Devices/Storage/VSP", swiftSettings: host),
        .target(
            name: "ParentPartition",
            dependencies: ["ControlProtocol", "GuestMemory", "LinuxSupport", "HyperV", "VMBusProtocol", "VMBusServer",
                           "VMBusHost", "IntegrationVSP", "BenchVSP", "ICProtocol", "BenchProtocol", "LegacyDevices",
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: host),

        // MARK: Tools.
        .target(
            name: "GuestBuilder",
            dependencies: [.product(name: "Subprocess", package: "swift-subprocess"),
                           .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: host),
        .target(
            name: "LocalDeployment",
            dependencies: ["ManagementAPI", "GuestBuilder"],
            swiftSettings: host),
        .target(
            name: "Bench",
            dependencies: ["VMBusProtocol", "VMBusHost", "BenchProtocol", "GuestMemory", "LinuxSupport", "ManagementAPI",
                           "LocalDeployment"],
            swiftSettings: host),
        .executableTarget(
            name: "DiskBench", dependencies: ["DiskBackend", "GuestMemory"],
            path: "Sources/Tools/DiskBench", swiftSettings: host),
        .executableTarget(
            name: "hv",
            dependencies: ["RootScheduler", "ParentPartition", "ManagementAPI", "GuestBuilder", "LocalDeployment", "Bench",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: host),

        // MARK: Tests.
        .testTarget(name: "HyperVTests", dependencies: ["HyperV"]),
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "VMBusProtocolTests", dependencies: ["VMBusProtocol", "TestSupport"]),
        .testTarget(name: "ICProtocolTests", dependencies: ["ICProtocol", "VMBusProtocol", "TestSupport"]),
        .testTarget(name: "LinuxBootTests", dependencies: ["LinuxBoot", "TestSupport"]),
        .testTarget(name: "ACPITests", dependencies: ["ACPI"]),
        .testTarget(name: "LegacyDevicesTests", dependencies: ["LegacyDevices"]),
        .testTarget(name: "LinuxSupportTests", dependencies: ["LinuxSupport"]),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory"]),
        .testTarget(name: "KVMTests", dependencies: ["KVM", "LinuxSupport"]),
        .testTarget(
            name: "PartitionTests",
            dependencies: ["Partition", "GuestBuilder", "HypervisorInterface", "KVM", "HyperV", "GuestMemory",
                           "LinuxSupport", .product(name: "SystemPackage", package: "swift-system")]),
        .testTarget(name: "HypervisorInterfaceTests", dependencies: ["HypervisorInterface", "HyperV", "GuestMemory"]),
        .testTarget(name: "ManagementAPITests", dependencies: ["ManagementAPI"]),
        .testTarget(name: "GuestBuilderTests", dependencies: ["GuestBuilder"]),
        .testTarget(name: "ControlProtocolTests", dependencies: ["ControlProtocol", "LinuxSupport", "HyperV"]),
        .testTarget(name: "VMBusServerTests", dependencies: ["VMBusServer", "VMBusProtocol"]),
        .testTarget(name: "BenchTests", dependencies: ["Bench", "BenchVSP", "BenchProtocol"]),
        .testTarget(name: "VMBusHostTests", dependencies: ["VMBusHost", "VMBusProtocol", "GuestMemory", "LinuxSupport"]),
        .testTarget(
            name: "StorageTests",
            dependencies: ["StorageProtocol", "StorageVSP", "DiskBackend", "GuestMemory", "LinuxSupport", "VMBusProtocol",
                           "HyperV", "TestSupport", .product(name: "SystemPackage", package: "swift-system")],
            path: "Sources/Devices/Storage/Tests"),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["LocalDeployment", "ManagementAPI", "GuestBuilder", "KVM"]),
    ]
)
