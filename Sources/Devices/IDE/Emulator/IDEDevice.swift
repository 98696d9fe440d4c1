import DeviceHost
import DeviceModel
import DiskBackend
import LinuxSupport
import VMBusProtocol

/// The settings of an emulated IDE channel (kind `"ide"`): one ATA disk, device 0, on a raw image
/// file the root opens.
///
///     {"kind": "ide", "path": "/var/lib/hv/data.img"}
public struct IDESettings: Codable, Sendable, Equatable {
    /// The image file (absolute path).
    public var path: String
    /// Write commands abort, and the file is opened read-only (default false).
    public var readOnly: Bool?
    /// Serve aligned sectors with O_DIRECT (default false).
    public var direct: Bool?
    /// IDENTIFY DEVICE model number, up to 40 printable ASCII characters.
    public var model: String?
    /// IDENTIFY DEVICE serial number, up to 20 printable ASCII characters (default: from the
    /// device's instance GUID).
    public var serial: String?
    /// "primary" (ports 0x1F0-0x1F7 and 0x3F6, IRQ 14; the default) or "secondary" (0x170-0x177
    /// and 0x376, IRQ 15).
    public var channel: String?

    public init(path: String, readOnly: Bool? = nil, direct: Bool? = nil, model: String? = nil, serial: String? = nil,
                channel: String? = nil) {
        self.path = path
        self.readOnly = readOnly
        self.direct = direct
        self.model = model
        self.serial = serial
        self.channel = channel
    }

    public var isReadOnly: Bool { readOnly ?? false }
    public var isDirect: Bool { direct ?? false }

    /// Where the channel sits, or `nil` for an unknown name.
    public var location: IDEChannelLocation? {
        switch channel ?? "primary" {
        case "primary": .primary
        case "secondary": .secondary
        default: nil
        }
    }
}

/// The legacy IDE controller as a partition's device: the full-virtualization path, every
/// register access an exit the root forwards to the parent (Docs/storage.md, "The emulated IDE
/// disk"). Linux drives it with `pata_legacy`, the Embedded guest with its PIO driver.
public enum IDEDevice: ParentDevice {
    public typealias Settings = IDESettings
    public static let kind = "ide"
    public static let summary = "emulated IDE/ATA channel (legacy ports, PIO) with a disk on a raw image file"
    public static let bus = DeviceBus.emulated
    /// A primary and a secondary channel.
    public static let maximumPerPartition = 2
    /// `pata_legacy` asks for IRQ 14 (15) by number, which Linux only has on the legacy-PC
    /// platform (Docs/hyperv-interface.md §16).
    public static let requiresLegacyPC = true

    public static func problem(with settings: IDESettings) -> String? {
        guard settings.path.hasPrefix("/"), !settings.path.contains("\0") else { return "the path must be absolute" }
        guard settings.location != nil else { return "channel must be \"primary\" or \"secondary\"" }
        do throws(IDEConfigurationError) {
            _ = try configuration(settings, instance: GUID(0, 0, 0, 0))
        } catch {
            return "\(error)"
        }
        return nil
    }

    public static func resources(for settings: IDESettings) -> [HostResource] {
        let file = HostResource.file(path: settings.path, writable: !settings.isReadOnly)
        return settings.isDirect ? [file, file] : [file]
    }

    public static func make(_ settings: IDESettings, instance: GUID, resources: [OwnedDescriptor],
                            context: any DeviceContext) throws(DeviceError) -> DeviceInstance {
        guard let location = settings.location, resources.count == (settings.isDirect ? 2 : 1) else {
            throw .invalidSettings(kind: kind, reason: "\(resources.count) descriptors for the disk's files")
        }
        let image: DiskImage
        do throws(SystemError) {
            image = try DiskImage(adopting: resources[0], direct: resources.count > 1 ? resources[1] : nil,
                                  name: settings.path, access: settings.isReadOnly ? .readOnly : .readWrite)
        } catch {
            throw .unavailable(kind: kind, reason: "\(error)")
        }
        guard image.size >= UInt64(ATASector.size) else {
            throw .unavailable(kind: kind, reason: "\(settings.path) is smaller than one sector")
        }
        let configuration: IDEDiskConfiguration
        do throws(IDEConfigurationError) {
            configuration = try Self.configuration(settings, instance: instance)
        } catch {
            throw .invalidSettings(kind: kind, reason: "\(error)")
        }
        let controller: IDEController<ImageStorage>
        do throws(SystemError) {
            controller = try IDEController(channel: IDEChannel(storage: ImageStorage(image: image), configuration: configuration,
                                                               location: location),
                                           context: context)
        } catch {
            throw .unavailable(kind: kind, reason: "\(error)")
        }
        return .emulated(controller)
    }

    /// IDENTIFY DEVICE's identity strings for these settings.
    static func configuration(_ settings: IDESettings, instance: GUID) throws(IDEConfigurationError) -> IDEDiskConfiguration {
        let serial = settings.serial ?? "HV" + String(instance.description.filter { $0 != "-" }.prefix(18)).uppercased()
        return try IDEDiskConfiguration(model: settings.model ?? "hv virtual IDE disk", serialNumber: serial,
                                        firmwareRevision: "1.0")
    }
}

/// The disk behind the emulated channel: the image file, read and written synchronously on the
/// thread that runs the channel (`IDEController` keeps storage work off the partition's control
/// thread where it could be slow).
struct ImageStorage: IDEStorage, Sendable {
    let image: DiskImage

    var sectorCount: UInt64 { image.size / UInt64(ATASector.size) }
    var isReadOnly: Bool { image.isReadOnly }

    mutating func read(at offset: UInt64, into buffer: inout [UInt8]) throws(SystemError) {
        try image.read(at: offset, into: &buffer)
    }

    mutating func write(at offset: UInt64, from bytes: [UInt8]) throws(SystemError) {
        try image.write(at: offset, from: bytes)
    }

    mutating func flush() throws(SystemError) {
        try image.dataSync()
    }
}
