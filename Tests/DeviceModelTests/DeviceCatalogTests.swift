import DeviceModel
import Foundation
import Testing
import VMBusProtocol

/// A device with no settings.
enum Plain: DeviceType {
    typealias Settings = NoSettings
    static let kind = "plain"
    static let summary = "a device without settings"
    static let bus = DeviceBus.vmbus(classID: GUID(1, 2, 3, 4))
}

/// A device whose settings are required and checked, up to four per partition.
enum Disk: DeviceType {
    struct Settings: Codable, Sendable, Equatable {
        var path: String
        var readOnly: Bool?
    }
    static let kind = "disk"
    static let summary = "a device with settings"
    static let bus = DeviceBus.vmbus(classID: GUID(5, 6, 7, 8))
    static let maximumPerPartition = 4
    static let changeableWhileRunning = true

    static func problem(with settings: Settings) -> String? {
        settings.path.hasPrefix("/") ? nil : "path \"\(settings.path)\" must be absolute"
    }

    static func resources(for settings: Settings) -> [HostResource] {
        [.file(path: settings.path, writable: settings.readOnly != true)]
    }
}

/// A device needing two files, as many per partition as there may be devices.
enum Mirror: DeviceType {
    typealias Settings = NoSettings
    static let kind = "mirror"
    static let summary = "a device with two host files"
    static let bus = DeviceBus.emulated
    static let maximumPerPartition = DeviceCatalog.maximumDevices

    static func resources(for settings: NoSettings) -> [HostResource] {
        [.file(path: "/dev/null", writable: false), .file(path: "/dev/zero", writable: false)]
    }
}

@Suite("Device catalog")
struct DeviceCatalogTests {
    let catalog = DeviceCatalog([Plain.self, Disk.self])

    func decode(_ json: String) throws -> [DeviceConfiguration] {
        try JSONDecoder().decode([DeviceConfiguration].self, from: Data(json.utf8))
    }

    @Test func aKindAloneGetsTheDefaultSettingsAndAStableInstance() throws {
        let specs = try catalog.resolve(try decode(#"["plain"]"#), partition: "alpha")
        #expect(specs.count == 1)
        #expect(specs[0].kind == "plain")
        #expect(specs[0].settings == Array("{}".utf8))
        #expect(specs[0].instance == DeviceCatalog.instance(partition: "alpha", kind: "plain", index: 0))
        let again = try catalog.resolve(try decode(#"["plain"]"#), partition: "alpha")
        #expect(again == specs)
        let other = try catalog.resolve(try decode(#"["plain"]"#), partition: "beta")
        #expect(other[0].instance != specs[0].instance)
    }

    @Test func instancesAreVersion4GUIDsDistinctPerIndex() {
        let first = DeviceCatalog.instance(partition: "p", kind: "disk", index: 0)
        let second = DeviceCatalog.instance(partition: "p", kind: "disk", index: 1)
        #expect(first != second)
        for guid in [first, second] {
            let bytes = guid.wireBytes
            #expect(bytes[7] >> 4 == 4)
            #expect(bytes[8] & 0xC0 == 0x80)
        }
    }

    @Test func settingsAreDecodedCheckedAndCanonical() throws {
        let specs = try catalog.resolve(try decode(#"[{"kind": "disk", "readOnly": true, "path": "/srv/a.img"}]"#),
                                        partition: "alpha")
        #expect(String(decoding: specs[0].settings, as: UTF8.self) == #"{"path":"\/srv\/a.img","readOnly":true}"#)
        let settings = try DeviceCatalog.settings(of: specs[0], as: Disk.self)
        #expect(settings == Disk.Settings(path: "/srv/a.img", readOnly: true))
    }

    @Test func resourcesComeWithTheirDeviceInOrderAndAreBounded() throws {
        let specs = try catalog.resolve(try decode(#"[{"kind": "disk", "path": "/a"}, "plain", {"kind": "disk", "path": "/b", "readOnly": true}]"#),
                                        partition: "alpha")
        #expect(specs.map(\.resources) == [[.file(path: "/a", writable: true)], [], [.file(path: "/b", writable: false)]])
        let mirrors = DeviceCatalog([Mirror.self])
        let fits = [DeviceConfiguration](repeating: "mirror", count: DeviceCatalog.maximumResources / 2)
        #expect(try mirrors.resolve(fits, partition: "alpha").count == fits.count)
        #expect(throws: DeviceError.invalidSettings(kind: "mirror", reason: "the devices need more than 32 host files in all")) {
            _ = try mirrors.resolve(fits + ["mirror"], partition: "alpha")
        }
    }

    @Test func aDeviceAddedToARunningPartitionGetsAFreeInstance() throws {
        let existing = try catalog.resolve(try decode(#"[{"kind": "disk", "path": "/a"}, {"kind": "disk", "path": "/b"}]"#),
                                           partition: "alpha")
        // The first disk was removed: its instance is free again, the second keeps its own.
        let added = try catalog.resolve(adding: DeviceConfiguration(kind: "disk", settings: ["path": .string("/c")]),
                                        to: [existing[1]], partition: "alpha")
        #expect(added.instance == existing[0].instance)
        #expect(added.resources == [.file(path: "/c", writable: true)])
        let full = existing + [added, added].enumerated().map { index, spec in
            DeviceSpec(kind: spec.kind, instance: GUID(UInt32(index + 10), 0, 0, 0), settings: spec.settings)
        }
        #expect(throws: DeviceError.tooMany(kind: "disk", maximum: 4)) {
            _ = try catalog.resolve(adding: DeviceConfiguration(kind: "disk", settings: ["path": .string("/d")]),
                                    to: full, partition: "alpha")
        }
    }

    @Test func emulatedDevicesAreNotHotPluggedAndSettingsChangeOnlyWhereTheTypeAllows() throws {
        let mirrors = DeviceCatalog([Mirror.self])
        #expect(throws: DeviceError.notWhileRunning(kind: "mirror", change: "added")) {
            _ = try mirrors.resolve(adding: "mirror", to: [], partition: "alpha")
        }
        let plain = try catalog.resolve(adding: "plain", to: [], partition: "alpha")
        #expect(throws: DeviceError.notWhileRunning(kind: "plain", change: "changed")) {
            _ = try catalog.resolve(changing: plain, to: [:], among: [plain])
        }
        let disk = try catalog.resolve(adding: DeviceConfiguration(kind: "disk", settings: ["path": .string("/a")]),
                                       to: [plain], partition: "alpha")
        let changed = try catalog.resolve(changing: disk, to: ["path": .string("/b"), "readOnly": .bool(true)],
                                          among: [plain, disk])
        #expect(changed.instance == disk.instance && changed.resources == [.file(path: "/b", writable: false)])
    }

    @Test func anExplicitInstanceIsKept() throws {
        let text = "6ac1f7d2-2c54-4a37-9f3e-0b9d5c8e1a20"
        let specs = try catalog.resolve(try decode(#"[{"kind": "plain", "instance": "\#(text)"}]"#), partition: "a")
        #expect(specs[0].instance == GUID(text))
    }

    @Test(arguments: [
        (#"["nope"]"#, "unknown device \"nope\" (known: plain, disk)"),
        (#"["plain", "plain"]"#, "a partition can have at most 1 \"plain\" device"),
        (#"["disk"]"#, "device \"disk\": missing setting \"path\""),
        (#"[{"kind": "disk", "path": "relative.img"}]"#, "device \"disk\": path \"relative.img\" must be absolute"),
        (#"[{"kind": "disk", "path": "/a", "size": 3}]"#, "device \"disk\": unknown setting \"size\""),
        (#"[{"kind": "plain", "colour": "red"}]"#, "device \"plain\": unknown setting \"colour\""),
        (#"[{"kind": "disk", "path": 7}]"#, "device \"disk\": path: Expected to decode String but found number instead."),
    ])
    func badDevicesAreRefusedWithOneSentence(_ json: String, _ sentence: String) throws {
        #expect(throws: Never.self) { _ = try decode(json) }
        do {
            _ = try catalog.resolve(try decode(json), partition: "alpha")
            Issue.record("\(json) was accepted")
        } catch {
            #expect("\(error)" == sentence)
        }
    }

    @Test func twoDevicesCannotShareAnInstance() throws {
        let text = "6ac1f7d2-2c54-4a37-9f3e-0b9d5c8e1a20"
        let json = #"[{"kind": "plain", "instance": "\#(text)"}, {"kind": "disk", "path": "/x", "instance": "\#(text)"}]"#
        #expect(throws: DeviceError.duplicateInstance(text)) { _ = try catalog.resolve(try decode(json), partition: "a") }
    }

    @Test func aPartitionHasABoundedNumberOfDevices() throws {
        let many = [DeviceConfiguration](repeating: "plain", count: DeviceCatalog.maximumDevices + 1)
        #expect(throws: DeviceError.tooManyDevices(count: many.count, maximum: DeviceCatalog.maximumDevices)) {
            _ = try catalog.resolve(many, partition: "a")
        }
    }

    @Test func configurationsRoundTripInTheirShortForm() throws {
        let devices = try decode(#"["plain", {"kind": "disk", "path": "/x"}]"#)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let text = String(decoding: try encoder.encode(devices), as: UTF8.self)
        #expect(text == #"["plain",{"kind":"disk","path":"\/x"}]"#)
        #expect(try decode(text) == devices)
    }

    @Test(arguments: [#"[7]"#, #"[{"path": "/x"}]"#, #"[{"kind": "plain", "instance": "not-a-guid"}]"#])
    func malformedEntriesFailToDecode(_ json: String) {
        #expect(throws: DecodingError.self) { _ = try decode(json) }
    }
}
