// swift-tools-version:6.2
//
// A microkernelized partition hypervisor modeled on Hyper-V, on Linux KVM.
//
// The folder of a target says which process it runs in and at which layer (Docs/architecture.md):
//
//   Sources/Shared/      compiled for the host and, by GuestBuilder, as Embedded Swift into guests
//                        HyperV <- VMBusProtocol <- VMBusClient
//   Sources/Platform/    host, bottom layer: C shims, Linux syscalls, KVM, guest memory
//                        CLinux, CKVM, CDiskIO <- LinuxSupport <- KVM, GuestMemory, ControlGroups
//   Sources/Root/        the root scheduler (`hv root`)
//                        LinuxBoot, ACPI, HypervisorInterface, Scheduling <- Partition <- RootScheduler
//   Sources/Parent/      the parent partition (`hv parent`)
//                        VMBusServer, VMBusHost, VirtualSwitch, DiskBackend <- DeviceHost <- DeviceRegistry, ParentPartition
//   Sources/Interfaces/  the contracts between processes
//                        ControlProtocol (root <-> parent), ManagementAPI (users <-> root)
//   Sources/Devices/     one folder per device, its parts named by where they run (see `devices`)
//   Sources/Tools/       GuestBuilder, LocalDeployment, Bench <- hv (the executable)
//   Partitions/Guest/    the Embedded Swift guest; its VSCs in Partitions/Guest/Devices/<Device>/ (also
//                        compiled here, for the host, so `swift build` checks them and tests run them)
//
// Lower layers never import higher ones, and every module declares each module it imports:
// `.ci/run` builds with `--explicit-target-dependency-import-check error`, so an undeclared
// import fails the build.
import PackageDescription

/// Release builds optimize across this package's modules: a module's functions may be inlined
/// and specialized in the modules that call it, not only within its own. The per-request paths
/// cross many small modules (ring, guest memory, protocol, device, disk queue); with this the
/// storage worker's 4 KiB read rate in `hv bench storage` rose by about a tenth
/// (Docs/benchmarks.md, "Optimizing across modules").
let crossModule: [SwiftSetting] = [
    .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
]
/// Modules that compile both for the host and as Embedded Swift for guests.
let embeddedSafe: [SwiftSetting] = crossModule + [
    .treatWarning("EmbeddedRestrictions", as: .error),
    .enableUpcomingFeature("ExistentialAny"),
]
let host: [SwiftSetting] = crossModule + [
    .enableUpcomingFeature("ExistentialAny"),
]
/// The storage worker's per-request path (the channel worker, the storage VSP, the disk queues):
/// release builds leave out Swift's run-time exclusivity checks, which cost that worker a tenth
/// or more of its 4 KiB read rate in `hv bench storage`. Debug builds keep them, and with them
/// `swift test`, its short fuzz runs and the sanitizer runs; `hv fuzz`'s long runs use the release
/// build (Docs/memory-safety.md, "Exclusivity checks").
let dataPath: [SwiftSetting] = host + [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let log = Target.Dependency.product(name: "Logging", package: "swift-log")
let system = Target.Dependency.product(name: "SystemPackage", package: "swift-system")

// MARK: - Devices

/// Every device, one line each: its folder, `Sources/Devices/<name>/`, the parts it has, and
/// what its parts import beyond the defaults below. Adding a device is its folder, a line here
/// and a line in `Sources/Parent/DeviceRegistry/DeviceRegistry.swift`.
let devices: [Device] = [
    Device("Bench", [.protocol, .vsp, .vsc]),
    Device("IC", [.protocol, .vsp, .vsc, .tests]),
    Device("IDE", [.emulator, .vsc, .tests], extra: ["DiskBackend"]),
    Device("Network", [.protocol, .vsp, .vsc, .tests], extra: ["GuestMemory", "VirtualSwitch", "FuzzSupport"]),
    Device("Serial", [.emulator, .tests]),
    Device("Storage", [.protocol, .vsp, .vsc, .tests], extra: ["GuestMemory", "DiskBackend", "FuzzSupport"],
           vspSettings: dataPath),
]

/// A device's parts, each a target named by where it runs:
///
///     Protocol/   <Device>Protocol   its wire protocol, shared with Embedded guests
///     VSP/        <Device>VSP        the parent's synthetic device (a VMBus service provider)
///     Emulator/   <Device>Emulator   the parent's emulated legacy device (port I/O)
///     Tests/      <Device>Tests      its tests
///     Partitions/Guest/Devices/<Device>/   <Device>VSC   the guest's driver, built into the guest
///                 by GuestBuilder and here for the host (Embedded-safe; generic over `VMBusChannel`)
struct Device {
    enum Part { case `protocol`, vsp, emulator, vsc, tests }

    var name: String
    var parts: Set<Part>
    var extra: [Target.Dependency]
    /// The VSP's Swift settings (`dataPath` for one whose per-request path was measured without
    /// run-time exclusivity checks).
    var vspSettings: [SwiftSetting]

    init(_ name: String, _ parts: Set<Part>, extra: [Target.Dependency] = [], vspSettings: [SwiftSetting] = host) {
        self.name = name
        self.parts = parts
        self.extra = extra
        self.vspSettings = vspSettings
    }

    var targets: [Target] {
        let path = "Sources/Devices/\(name)"
        var targets: [Target] = []
        var tested: [Target.Dependency] = ["TestSupport", "HyperV", "VMBusProtocol", system]
        let wire: [Target.Dependency] = parts.contains(.protocol) ? [.target(name: "\(name)Protocol")] : []
        if parts.contains(.protocol) {
            targets.append(.target(name: "\(name)Protocol", dependencies: ["HyperV", "VMBusProtocol"],
                                   path: "\(path)/Protocol", swiftSettings: embeddedSafe))
            tested += wire
        }
        if parts.contains(.vsp) {
            targets.append(.target(
                name: "\(name)VSP",
                dependencies: ["HyperV", "VMBusProtocol", "VMBusHost", "DeviceHost", "DeviceModel", "LinuxSupport", log]
                    + wire + extra,
                path: "\(path)/VSP", swiftSettings: vspSettings))
            tested += [.target(name: "\(name)VSP"), "VMBusHost", "DeviceHost", "DeviceModel", "LinuxSupport", "GuestMemory",
                       "VSPTestSupport"]
        }
        if parts.contains(.emulator) {
            targets.append(.target(name: "\(name)Emulator",
                                   dependencies: ["HyperV", "VMBusProtocol", "DeviceHost", "DeviceModel", "LinuxSupport", log] + extra,
                                   path: "\(path)/Emulator", swiftSettings: host))
            tested += [.target(name: "\(name)Emulator"), "DeviceHost", "DeviceModel", "LinuxSupport", "GuestMemory", log]
        }
        if parts.contains(.vsc) {
            targets.append(.target(name: "\(name)VSC", dependencies: ["HyperV", "VMBusProtocol", "VMBusClient"] + wire,
                                   path: "Partitions/Guest/Devices/\(name)", swiftSettings: embeddedSafe))
            tested += [.target(name: "\(name)VSC"), "VMBusClient"]
        }
        if parts.contains(.tests) {
            // Each dependency once (a part's list and `extra` may both name one).
            var seen = Set<String>()
            let unique = (tested + extra).filter { seen.insert(String(describing: $0)).inserted }
            targets.append(.testTarget(name: "\(name)Tests", dependencies: unique, path: "\(path)/Tests"))
        }
        return targets
    }

    /// The modules the parent builds the device from.
    var modules: [Target.Dependency] {
        (parts.contains(.vsp) ? [.target(name: name + "VSP")] : [])
            + (parts.contains(.emulator) ? [.target(name: name + "Emulator")] : [])
    }
}

// MARK: - Package

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
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
    ],
    targets: [
        // MARK: Shared with Embedded Swift guests (no Foundation, no existentials, typed throws only).
        .target(name: "HyperV", path: "Sources/Shared/HyperV", swiftSettings: embeddedSafe),
        .target(name: "VMBusProtocol", dependencies: ["HyperV"], path: "Sources/Shared/VMBusProtocol",
                swiftSettings: embeddedSafe),
        .target(name: "VMBusClient", dependencies: ["HyperV", "VMBusProtocol"], path: "Sources/Shared/VMBusClient",
                swiftSettings: embeddedSafe),

        // MARK: Platform: the host's bottom layer.
        .target(name: "CLinux", path: "Sources/Platform/CLinux"),
        .target(name: "CKVM", path: "Sources/Platform/CKVM"),
        .target(name: "LinuxSupport", dependencies: ["CLinux", system], path: "Sources/Platform/LinuxSupport",
                swiftSettings: host),
        // Debug builds route KVM's system calls through a mock kernel tests can install (MockKernel).
        .target(name: "KVM", dependencies: ["CKVM", "LinuxSupport", system], path: "Sources/Platform/KVM",
                swiftSettings: host + [.define("ENABLE_MOCKING", .when(configuration: .debug))]),
        .target(name: "GuestMemory", dependencies: ["LinuxSupport"], path: "Sources/Platform/GuestMemory",
                swiftSettings: host),
        .target(name: "ControlGroups", dependencies: ["LinuxSupport", system], path: "Sources/Platform/ControlGroups",
                swiftSettings: host),
        .target(name: "CDiskIO", path: "Sources/Platform/CDiskIO"),
        // Least privilege: the parent's sandbox (Landlock, seccomp through libseccomp loaded at
        // run time), peer credentials, acting with a caller's rights, secure runtime directories.
        .target(name: "CPrivilege", path: "Sources/Platform/CPrivilege"),
        .target(name: "Privilege", dependencies: ["CDiskIO", "CPrivilege", "LinuxSupport", system], path: "Sources/Platform/Privilege",
                swiftSettings: host),
        // The fuzzers' seeded generator, mutator and target contract (`hv fuzz`, FuzzTargets).
        .target(name: "FuzzSupport", dependencies: ["LinuxSupport"], path: "Sources/Platform/FuzzSupport",
                swiftSettings: host),

        // MARK: Root scheduler.
        .target(name: "LinuxBoot", dependencies: ["HyperV"], path: "Sources/Root/LinuxBoot", swiftSettings: host),
        .target(name: "ACPI", dependencies: ["HyperV"], path: "Sources/Root/ACPI", swiftSettings: host),
        .target(name: "Scheduling", path: "Sources/Root/Scheduling", swiftSettings: host),
        .target(name: "HypervisorInterface", dependencies: ["HyperV", "GuestMemory", "LinuxSupport"],
                path: "Sources/Root/HypervisorInterface", swiftSettings: host),
        .target(name: "Partition",
                dependencies: ["KVM", "GuestMemory", "HyperV", "HypervisorInterface", "LinuxSupport", "LinuxBoot", "ACPI"],
                path: "Sources/Root/Partition", swiftSettings: host),
        .target(name: "RootScheduler",
                dependencies: ["Partition", "HypervisorInterface", "KVM", "HyperV", "ControlProtocol", "ManagementAPI",
                               "DeviceModel", "VMBusProtocol", "GuestMemory", "LinuxSupport", "ControlGroups", "Scheduling",
                               "Privilege", "FuzzSupport", log,
                               .product(name: "Hummingbird", package: "hummingbird"),
                               .product(name: "HummingbirdCore", package: "hummingbird"),
                               .product(name: "NIOCore", package: "swift-nio"),
                               .product(name: "NIOHTTPTypes", package: "swift-nio-extras")],
                path: "Sources/Root/RootScheduler", swiftSettings: host),

        // MARK: Parent partition.
        .target(name: "VMBusServer", dependencies: ["HyperV", "VMBusProtocol"], path: "Sources/Parent/VMBusServer",
                swiftSettings: host),
        .target(name: "VMBusHost", dependencies: ["VMBusProtocol", "GuestMemory", "LinuxSupport", "HyperV"],
                path: "Sources/Parent/VMBusHost", swiftSettings: dataPath),
        .target(name: "DiskBackend", dependencies: ["CDiskIO", "GuestMemory", "LinuxSupport", system],
                path: "Sources/Parent/DiskBackend", swiftSettings: dataPath),
        .target(name: "VirtualSwitch", dependencies: ["CDiskIO", "NetworkProtocol", "LinuxSupport", "FuzzSupport"],
                path: "Sources/Parent/VirtualSwitch", swiftSettings: host),
        .target(name: "DeviceHost", dependencies: ["DeviceModel", "VMBusHost", "VMBusProtocol", "GuestMemory", "LinuxSupport", log],
                path: "Sources/Parent/DeviceHost", swiftSettings: host),
        .target(name: "DeviceRegistry", dependencies: ["DeviceHost", "DeviceModel"] + devices.flatMap(\.modules),
                path: "Sources/Parent/DeviceRegistry", swiftSettings: host),
        .target(name: "ParentPartition",
                dependencies: ["ControlProtocol", "DeviceHost", "DeviceModel", "GuestMemory", "LinuxSupport", "HyperV",
                               "VMBusProtocol", "VMBusServer", "VMBusHost", "VirtualSwitch", "Privilege", log],
                path: "Sources/Parent/ParentPartition", swiftSettings: host),

        // MARK: Interfaces between processes.
        .target(name: "DeviceModel", dependencies: ["VMBusProtocol"], path: "Sources/Interfaces/DeviceModel",
                swiftSettings: host),
        .target(name: "ControlProtocol", dependencies: ["LinuxSupport", "HyperV", "VMBusProtocol", "DeviceModel"],
                path: "Sources/Interfaces/ControlProtocol", swiftSettings: host),
        .target(name: "ManagementAPI",
                dependencies: ["DeviceModel",
                               .product(name: "NIOCore", package: "swift-nio"),
                               .product(name: "NIOPosix", package: "swift-nio"),
                               .product(name: "NIOHTTP1", package: "swift-nio")],
                path: "Sources/Interfaces/ManagementAPI", swiftSettings: host),

        // MARK: Tools.
        .target(name: "GuestBuilder",
                dependencies: [.product(name: "Subprocess", package: "swift-subprocess"), system],
                path: "Sources/Tools/GuestBuilder", swiftSettings: host),
        .target(name: "LocalDeployment", dependencies: ["ManagementAPI", "GuestBuilder", "DeviceRegistry", "Privilege", "LinuxSupport"],
                path: "Sources/Tools/LocalDeployment", swiftSettings: host),
        .target(name: "Bench",
                dependencies: ["VMBusProtocol", "VMBusHost", "BenchProtocol", "GuestMemory", "LinuxSupport", "ManagementAPI",
                               "LocalDeployment", "DeviceModel", "DiskBackend", "NetworkProtocol", "NetworkVSC"],
                path: "Sources/Tools/Bench", swiftSettings: host),
        // Every fuzz target, registered in one list (`hv fuzz`, FuzzTests).
        .target(name: "FuzzTargets",
                dependencies: ["FuzzSupport", "VMBusServer", "VMBusHost", "VMBusProtocol", "HyperV", "HypervisorInterface",
                               "GuestMemory", "LinuxSupport", "DeviceHost", "DeviceModel", "DeviceRegistry", "ControlProtocol",
                               "ManagementAPI", "RootScheduler", "ICProtocol", "ICVSP", "BenchProtocol", "BenchVSP",
                               "SerialEmulator", "NetworkVSP", "VirtualSwitch", "StorageVSP", "IDEEmulator", log],
                path: "Sources/Tools/FuzzTargets", swiftSettings: host),
        .executableTarget(
            name: "hv",
            dependencies: ["RootScheduler", "ParentPartition", "DeviceRegistry", "DeviceModel", "ManagementAPI", "GuestBuilder",
                           "LocalDeployment", "Bench", "DiskBackend", "Privilege", "FuzzSupport", "FuzzTargets",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"), log],
            path: "Sources/Tools/hv", swiftSettings: host),

        // MARK: Tests (device tests live in their device's folder).
        .target(name: "TestSupport", dependencies: ["FuzzSupport", "CMutexAnnotations", log], path: "Tests/TestSupport"),
        // Under ThreadSanitizer only: Mutex's contended hand-over made visible to the sanitizer.
        .target(name: "CMutexAnnotations", path: "Tests/CMutexAnnotations"),
        // A guest's end of a VMBus channel in memory, for the tests of every VSP.
        .target(name: "VSPTestSupport", dependencies: ["VMBusHost", "VMBusProtocol", "GuestMemory", "LinuxSupport", "HyperV"],
                path: "Tests/VSPTestSupport"),
        .testTarget(name: "HyperVTests", dependencies: ["HyperV"]),
        .testTarget(name: "VMBusProtocolTests", dependencies: ["VMBusProtocol", "TestSupport"]),
        .testTarget(name: "LinuxBootTests", dependencies: ["LinuxBoot", "HyperV", "TestSupport"]),
        .testTarget(name: "ACPITests", dependencies: ["ACPI", "HyperV"]),
        .testTarget(name: "LinuxSupportTests", dependencies: ["LinuxSupport", system]),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory", "LinuxSupport"]),
        .testTarget(name: "PrivilegeTests", dependencies: ["Privilege", "LinuxSupport", "TestSupport"]),
        .testTarget(name: "FuzzTests", dependencies: ["FuzzTargets", "FuzzSupport"]),
        .testTarget(name: "KVMTests", dependencies: ["KVM", "CKVM", "LinuxSupport", system]),
        .testTarget(name: "SchedulingTests", dependencies: ["Scheduling", "TestSupport"]),
        // The root's processor controls in this host's real control groups (no /dev/kvm needed).
        .testTarget(name: "ProcessorControlTests",
                    dependencies: ["RootScheduler", "ControlGroups", "ManagementAPI", "LinuxSupport", log]),
        .testTarget(name: "ControlGroupsTests",
                    dependencies: ["ControlGroups", "LinuxSupport", "TestSupport",
                                   .product(name: "Subprocess", package: "swift-subprocess")]),
        .testTarget(name: "PartitionTests",
                    dependencies: ["Partition", "GuestBuilder", "HypervisorInterface", "KVM", "HyperV", "GuestMemory",
                                   "LinuxSupport", system]),
        .testTarget(name: "HypervisorInterfaceTests",
                    dependencies: ["HypervisorInterface", "HyperV", "GuestMemory", "LinuxSupport"]),
        .testTarget(name: "ManagementAPITests", dependencies: ["ManagementAPI", "DeviceModel"]),
        .testTarget(name: "GuestBuilderTests", dependencies: ["GuestBuilder"]),
        .testTarget(name: "DeviceModelTests", dependencies: ["DeviceModel", "VMBusProtocol"]),
        .testTarget(name: "DeviceRegistryTests",
                    dependencies: ["DeviceRegistry", "DeviceHost", "DeviceModel", "VMBusHost", "VMBusProtocol", "HyperV", "GuestMemory",
                                   "LinuxSupport",
                                   log]),
        .testTarget(name: "ControlProtocolTests",
                    dependencies: ["ControlProtocol", "DeviceModel", "VMBusProtocol", "LinuxSupport", "HyperV"]),
        .testTarget(name: "VMBusServerTests", dependencies: ["VMBusServer", "VMBusProtocol", "HyperV", "TestSupport"]),
        .testTarget(name: "VMBusClientTests",
                    dependencies: ["VMBusClient", "VMBusServer", "VMBusProtocol", "HyperV", "TestSupport",
                                   "ICVSC", "ICVSP", "ICProtocol", "BenchVSC", "BenchVSP", "BenchProtocol", "VMBusHost",
                                   "GuestMemory", "LinuxSupport"]),
        .testTarget(name: "BenchTests",
                    dependencies: ["Bench", "BenchVSP", "BenchProtocol", "VSPTestSupport", "VMBusHost", "VMBusProtocol",
                                   "LinuxSupport", "HyperV", "TestSupport"]),
        .testTarget(name: "VMBusHostTests",
                    dependencies: ["VMBusHost", "VMBusProtocol", "GuestMemory", "LinuxSupport", "VSPTestSupport"]),
        .testTarget(name: "IntegrationTests",
                    dependencies: ["LocalDeployment", "ManagementAPI", "DeviceModel", "GuestBuilder", "KVM", "StorageVSC",
                                   "Privilege", "LinuxSupport"]),
        // Root ↔ parent and user ↔ root, each end real, over real sockets, without /dev/kvm.
        .testTarget(name: "ProcessSeamTests",
                    dependencies: ["RootScheduler", "ParentPartition", "DeviceRegistry", "DeviceModel", "ControlProtocol",
                                   "ManagementAPI", "Partition",
                                   "HypervisorInterface", "KVM", "CKVM", "GuestMemory", "HyperV", "VMBusProtocol",
                                   "LinuxSupport", "Privilege", "TestSupport", log, .product(name: "NIOHTTP1", package: "swift-nio"),
                                   "VMBusClient", "VMBusHost", "ICVSC", "ICProtocol", "BenchProtocol"]),
    ] + devices.flatMap(\.targets)
)
