import DeviceModel
import DiskBackend
import GuestMemory
import LinuxSupport
import Logging
import StorageProtocol
import Synchronization
import VMBusHost
import VMBusProtocol

/// The synthetic SCSI controller's service provider: what the channels of one controller share
/// (the adapter with its disks, their images, the negotiated version). Each open channel —
/// the primary and every sub-channel — gets its own `StorageSession`.
public final class StorageVSP: VirtualServiceProvider, Sendable {
    public let controller: StorageController
    public let instance: GUID
    /// The per-channel protocol limits every session uses.
    public let configuration: StorageServer.Configuration
    let memory: GuestMemory
    let host: any VSPHost
    let logger: Logger
    /// Signalled after every attach, detach and resize, so that the primary channel's worker
    /// wakes and announces the change (ENUMERATE_BUS).
    let busChanged: EventFD
    /// The engine each channel's disk queues run on.
    let engine: DiskEngineKind
    private let fixed: (subChannels: Int?, maxTransferKiB: Int?)
    private let state = Mutex(State())

    /// A disk as attached: its settings, the controller's unit and the image behind it.
    public struct AttachedDisk: Sendable {
        public var settings: StorageSettings.Disk
        public var unit: StorageController.UnitID
        public var image: DiskImage
    }

    struct State: Sendable {
        var disks: [StorageController.Address: AttachedDisk] = [:]
        var images: [StorageController.UnitID: DiskImage] = [:]
        var negotiated: StorageProtocolVersion?
        var channelsOpen = 0
    }

    /// Requests one channel may have in flight (Linux keeps up to 316 per channel; more are
    /// answered BUSY, which it retries).
    public static let maximumOutstandingRequests = 256

    /// A controller with no disks yet (`apply` attaches them).
    /// - Parameters:
    ///   - host: the partition, for facts (`hv partition show`) and its processor count.
    public init(settings: StorageSettings, instance: GUID, memory: GuestMemory, host: any VSPHost, logger: Logger,
                engine: DiskEngineKind = .default) throws(StorageVSPError) {
        let event: EventFD
        do {
            event = try EventFD()
        } catch {
            throw .backend("cannot create the bus-change eventfd: \(error)")
        }
        busChanged = event
        controller = StorageController(maximumTransferBytes: UInt32((settings.maxTransferKiB ?? 256) * 1024)) {
            event.signal()
        }
        let subChannels = settings.subChannels ?? max(0, Int(host.processorCount) - 1)
        configuration = StorageServer.Configuration(
            maximumSubChannels: UInt16(min(max(subChannels, 0), StorageSettings.maximumSubChannels)),
            maximumOutstandingRequests: Self.maximumOutstandingRequests)
        fixed = (settings.subChannels, settings.maxTransferKiB)
        self.instance = instance
        self.memory = memory
        self.host = host
        self.logger = logger
        self.engine = engine
    }

    /// The prefix of this controller's facts (`hv partition show`): `scsi.<first 8 hex digits of
    /// the instance>.`, followed by `protocol`, `channels` and `disks`.
    public var factPrefix: String { "scsi.\(String(instance.description.prefix(8)))." }

    // MARK: Disks

    /// Makes the attached disks those of `settings`: disks that are gone or whose settings
    /// changed are detached, new ones attached from `resources` (the descriptors the root opened
    /// for `settings.resources`, in order). Disks whose settings are unchanged keep running on
    /// the descriptors they have; their new ones are closed.
    /// - Throws: when the sub-channel or transfer limits change (they are fixed while the
    ///   channels live), the descriptors do not match the disks, or a new image is unusable; then
    ///   nothing changed.
    public func apply(_ settings: StorageSettings, resources: [OwnedDescriptor]) throws(StorageVSPError) {
        if let problem = settings.problem { throw .invalidSettings(problem) }
        guard settings.subChannels == fixed.subChannels, settings.maxTransferKiB == fixed.maxTransferKiB else {
            throw .invalidSettings("subChannels and maxTransferKiB cannot change while the partition runs")
        }
        guard resources.count == settings.resources.count else {
            throw .invalidSettings("\(resources.count) descriptors for \(settings.resources.count) disk files")
        }
        // Everything that can fail happens before the adapter changes.
        var remaining = resources[...]
        var wanted: [StorageController.Address: (disk: StorageSettings.Disk, files: [OwnedDescriptor])] = [:]
        for disk in settings.disks {
            let count = disk.isDirect ? 2 : 1
            wanted[StorageController.Address(target: disk.targetID, lun: disk.lunID)] = (disk, Array(remaining.prefix(count)))
            remaining = remaining.dropFirst(count)
        }
        let current = state.withLock { $0.disks }
        var opened: [StorageController.Address: (StorageSettings.Disk, DiskImage, SCSIDiskConfiguration)] = [:]
        for (address, entry) in wanted where current[address]?.settings != entry.disk {
            let image: DiskImage
            do throws(SystemError) {
                image = try DiskImage(adopting: entry.files[0], direct: entry.files.count > 1 ? entry.files[1] : nil,
                                      name: entry.disk.path, access: entry.disk.isReadOnly ? .readOnly : .readWrite)
            } catch {
                throw .backend("\(error)")
            }
            let configuration = try diskConfiguration(entry.disk, image: image, address: address)
            opened[address] = (entry.disk, image, configuration)
        }
        for (address, disk) in current where wanted[address] == nil || opened[address] != nil {
            controller.detach(target: address.target, lun: address.lun)
            state.withLock { state in
                state.disks[address] = nil
                state.images[disk.unit] = nil
            }
            logger.info("partition \(host.partitionName): SCSI disk \(address) (\(disk.settings.path)) detached")
        }
        for (address, (disk, image, configuration)) in opened.sorted(by: { ($0.key.target, $0.key.lun) < ($1.key.target, $1.key.lun) }) {
            let unit: StorageController.UnitID
            do throws(StorageControllerError) {
                unit = try controller.attach(configuration, target: address.target, lun: address.lun)
            } catch {
                throw .invalidSettings("\(error)")
            }
            state.withLock { state in
                state.disks[address] = AttachedDisk(settings: disk, unit: unit, image: image)
                state.images[unit] = image
            }
            let traits = (image.isReadOnly ? ", read-only" : "") + (image.isDirect ? ", O_DIRECT" : "")
            logger.info("partition \(host.partitionName): SCSI disk \(address) attached: \(disk.path), \(image.size) bytes\(traits)")
        }
        reportDisks()
    }

    /// What the guest sees of a disk: identity, geometry and features.
    func diskConfiguration(_ disk: StorageSettings.Disk, image: DiskImage, address: StorageController.Address)
        throws(StorageVSPError) -> SCSIDiskConfiguration
    {
        let blockSize = UInt32(disk.blockSize ?? 512)
        let blocks = image.size / UInt64(blockSize)
        guard blocks > 0 else {
            throw .invalidSettings("\(disk.path) holds \(image.size) bytes, less than one \(blockSize)-byte block")
        }
        let serial = disk.serial ?? "\(instance)-\(address.target)-\(address.lun)"
        var configuration = SCSIDiskConfiguration(
            serialNumber: serial, blockSize: blockSize, blockCount: blocks, readOnly: disk.isReadOnly,
            writeCacheEnabled: disk.writeCache ?? true,
            discardSupported: (disk.discard ?? true) && !disk.isReadOnly && image.supportsPunchHole,
            physicalBlockSize: max(blockSize, 4096))
        if let model = disk.model { configuration.product = model }
        do throws(SCSIDiskConfigurationError) {
            return try configuration.validated()
        } catch {
            throw .invalidSettings("\(disk.path): \(error)")
        }
    }

    /// The disks attached now, by address.
    public var disks: [StorageController.Address: AttachedDisk] { state.withLock { $0.disks } }

    /// The image behind an attached unit (`nil` once it is detached).
    func image(for unit: StorageController.UnitID) -> DiskImage? {
        state.withLock { $0.images[unit] }
    }

    // MARK: Channels

    public func openSession(_ opening: ChannelOpening) -> sending (any ChannelSession)? {
        let role: StorageServer.Role
        if opening.subChannelIndex == 0 {
            role = .primary
        } else {
            // Sub-channels are offered only after the primary negotiated (CREATE_SUB_CHANNELS
            // needs the ready state), and run at its version.
            guard let version = state.withLock({ $0.negotiated }) else {
                logger.warning("partition \(host.partitionName): SCSI sub-channel \(opening.subChannelIndex) opened before negotiation; refused")
                return nil
            }
            role = .subChannel(version)
        }
        let count = state.withLock { state -> Int in
            state.channelsOpen += 1
            return state.channelsOpen
        }
        host.report([factPrefix + "channels": "\(count)"])
        return StorageSession(provider: self, server: StorageServer(controller: controller, configuration: configuration, role: role),
                              index: opening.subChannelIndex)
    }

    /// The parent restarted with this channel open: the channel carries on over the same rings.
    /// A storage channel must never be rescinded under a guest: Linux's storvsc never times a
    /// request out, so a disk removed that way hangs every request sent meanwhile, and the
    /// guest's shutdown with them. Requests still in the ring are served by the new session;
    /// the primary resumes ready (`StorageServer.init(resuming:)`), a sub-channel at that version.
    public func resumeSession(_ opening: ChannelOpening) -> sending (any ChannelSession)? {
        guard let version = StorageServer.resumableVersion(of: configuration) else { return nil }
        let server: StorageServer
        if opening.subChannelIndex == 0 {
            guard let resumed = StorageServer(resuming: controller, configuration: configuration) else { return nil }
            server = resumed
            negotiated(version)
        } else {
            server = StorageServer(controller: controller, configuration: configuration, role: .subChannel(version))
        }
        let count = state.withLock { state -> Int in
            state.channelsOpen += 1
            return state.channelsOpen
        }
        host.report([factPrefix + "channels": "\(count)", factPrefix + "resumed": "yes"])
        return StorageSession(provider: self, server: server, index: opening.subChannelIndex)
    }

    /// The primary channel finished initialization at `version`.
    func negotiated(_ version: StorageProtocolVersion) {
        state.withLock { $0.negotiated = version }
        host.report([factPrefix + "protocol": "\(version.major).\(version.minor)"])
    }

    /// A channel closed.
    func sessionClosed() {
        let count = state.withLock { state -> Int in
            state.channelsOpen = max(0, state.channelsOpen - 1)
            return state.channelsOpen
        }
        host.report([factPrefix + "channels": "\(count)"])
    }

    func reportDisks() {
        let list = disks.sorted { ($0.key.target, $0.key.lun) < ($1.key.target, $1.key.lun) }.map { address, disk in
            "\(address.target):\(address.lun)=\(disk.settings.path) \(disk.image.size)B"
                + (disk.image.isReadOnly ? " ro" : "") + (disk.image.isDirect ? " direct" : "")
        }
        host.report([factPrefix + "disks": list.isEmpty ? "none" : list.joined(separator: ", ")])
    }
}

/// Why the controller could not be built or changed.
public enum StorageVSPError: Error, Hashable, Sendable, CustomStringConvertible {
    case invalidSettings(String)
    /// A host resource failed (an image file, an eventfd).
    case backend(String)

    public var description: String {
        switch self {
        case .invalidSettings(let reason): reason
        case .backend(let reason): reason
        }
    }
}
