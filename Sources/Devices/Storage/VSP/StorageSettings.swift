import DeviceModel
import GuestMemory

/// The settings of a synthetic SCSI controller as a partition configuration spells them:
///
///     {"kind": "scsi", "disks": [{"path": "/var/lib/hv/data.img", "lun": 0},
///                                {"path": "/srv/iso.img", "lun": 1, "readOnly": true}],
///      "subChannels": 1}
///
/// Every field but `disks` and a disk's `path` and `lun` is optional; absent fields take the
/// defaults below. Configuration is untrusted input: `problem` checks every field, and a disk
/// object with a key this type does not read is refused rather than ignored.
public struct StorageSettings: Codable, Sendable, Equatable {
    /// One disk on the controller, backed by a raw image file the root opens.
    public struct Disk: Codable, Sendable, Equatable {
        /// The image file (absolute path; a regular file or block device on the host).
        public var path: String
        /// The logical unit number, 0-254.
        public var lun: Int
        /// The SCSI target, 0 or 1 (default 0).
        public var target: Int?
        /// Writes and UNMAP fail with DATA PROTECT, and the file is opened read-only (default false).
        public var readOnly: Bool?
        /// Serve aligned transfers with O_DIRECT, bypassing the host's page cache (default false).
        public var direct: Bool?
        /// The unit serial number (VPD page 0x80), 1-64 printable ASCII characters; default: the
        /// controller's instance GUID with the target and LUN.
        public var serial: String?
        /// The INQUIRY product identification, 1-16 printable ASCII characters (default
        /// "Virtual Disk").
        public var model: String?
        /// Whether the disk has a volatile write cache the guest flushes (default true). Without
        /// one, every write completes only once durable (RWF_DSYNC).
        public var writeCache: Bool?
        /// Offer UNMAP (discard) where the image's file system can punch holes (default true).
        public var discard: Bool?
        /// The logical block size, 512 or 4096 (default 512).
        public var blockSize: Int?

        public init(path: String, lun: Int, target: Int? = nil, readOnly: Bool? = nil, direct: Bool? = nil,
                    serial: String? = nil, model: String? = nil, writeCache: Bool? = nil, discard: Bool? = nil,
                    blockSize: Int? = nil) {
            self.path = path
            self.lun = lun
            self.target = target
            self.readOnly = readOnly
            self.direct = direct
            self.serial = serial
            self.model = model
            self.writeCache = writeCache
            self.discard = discard
            self.blockSize = blockSize
        }

        enum CodingKeys: String, CodingKey, CaseIterable {
            case path, lun, target, readOnly, direct, serial, model, writeCache, discard, blockSize
        }

        public init(from decoder: any Decoder) throws {
            // A misspelt key would otherwise be dropped silently, and the disk built without it.
            if case .object(let object) = try JSONValue(from: decoder),
               let unknown = object.keys.sorted().first(where: { CodingKeys(rawValue: $0) == nil }) {
                throw DecodingError.dataCorrupted(.init(
                    codingPath: decoder.codingPath,
                    debugDescription: "unknown disk setting \"\(unknown)\" (known: "
                        + CodingKeys.allCases.map(\.rawValue).joined(separator: ", ") + ")"))
            }
            let container = try decoder.container(keyedBy: CodingKeys.self)
            path = try container.decode(String.self, forKey: .path)
            lun = try container.decode(Int.self, forKey: .lun)
            target = try container.decodeIfPresent(Int.self, forKey: .target)
            readOnly = try container.decodeIfPresent(Bool.self, forKey: .readOnly)
            direct = try container.decodeIfPresent(Bool.self, forKey: .direct)
            serial = try container.decodeIfPresent(String.self, forKey: .serial)
            model = try container.decodeIfPresent(String.self, forKey: .model)
            writeCache = try container.decodeIfPresent(Bool.self, forKey: .writeCache)
            discard = try container.decodeIfPresent(Bool.self, forKey: .discard)
            blockSize = try container.decodeIfPresent(Int.self, forKey: .blockSize)
        }

        public var isReadOnly: Bool { readOnly ?? false }
        public var isDirect: Bool { direct ?? false }
        public var targetID: UInt8 { UInt8(clamping: target ?? 0) }
        public var lunID: UInt8 { UInt8(clamping: lun) }
    }

    /// The disks, at most `StorageSettings.maximumDisks`.
    public var disks: [Disk]
    /// The most sub-channels the guest may open (Linux asks for one per processor beyond the
    /// first); default: the partition's processors minus one.
    public var subChannels: Int?
    /// The largest transfer of one request in KiB, 4-4092 (default 256, as Hyper-V).
    public var maxTransferKiB: Int?
    /// The largest `maxTransferKiB`: a transfer that starts mid-page spans one page more than its
    /// size, and each page may be its own I/O vector, of which one request may have
    /// `GuestMemory.maximumIOVectors` (the kernel's IOV_MAX).
    public static let maximumTransferKiB = (GuestMemory.maximumIOVectors - 1) * 4

    public init(disks: [Disk], subChannels: Int? = nil, maxTransferKiB: Int? = nil) {
        self.disks = disks
        self.subChannels = subChannels
        self.maxTransferKiB = maxTransferKiB
    }

    /// The most disks one controller holds (each needs one or two of the partition's host files).
    public static let maximumDisks = 16
    /// The most sub-channels a primary channel can have (`VSPChannel.offerSubChannels`).
    public static let maximumSubChannels = 63

    /// The first problem with these settings, as a sentence, or `nil`.
    public var problem: String? {
        guard disks.count <= Self.maximumDisks else {
            return "\(disks.count) disks are more than the \(Self.maximumDisks) a controller holds"
        }
        var addresses: Set<Int> = []
        for (index, disk) in disks.enumerated() {
            let name = "disk \(index) (\(disk.path))"
            guard disk.path.hasPrefix("/"), !disk.path.contains("\0") else { return "\(name): the path must be absolute" }
            guard (0...254).contains(disk.lun) else { return "\(name): lun must be 0-254, not \(disk.lun)" }
            let target = disk.target ?? 0
            guard (0...1).contains(target) else { return "\(name): target must be 0 or 1, not \(target)" }
            guard addresses.insert(target << 8 | disk.lun).inserted else {
                return "\(name): target \(target) LUN \(disk.lun) is taken by another disk"
            }
            if let serial = disk.serial, let problem = Self.asciiProblem(serial, 1...64) { return "\(name): serial \(problem)" }
            if let model = disk.model, let problem = Self.asciiProblem(model, 1...16) { return "\(name): model \(problem)" }
            if let blockSize = disk.blockSize, blockSize != 512, blockSize != 4096 {
                return "\(name): blockSize must be 512 or 4096, not \(blockSize)"
            }
        }
        if let subChannels, !(0...Self.maximumSubChannels).contains(subChannels) {
            return "subChannels must be 0-\(Self.maximumSubChannels), not \(subChannels)"
        }
        if let kib = maxTransferKiB, !(4...Self.maximumTransferKiB).contains(kib) || kib % 4 != 0 {
            return "maxTransferKiB must be a multiple of 4 from 4 to \(Self.maximumTransferKiB), not \(kib)"
        }
        return nil
    }

    /// The host files the disks need, disk by disk: the image, and for an O_DIRECT disk the
    /// image again (its own open file description, on which the parent sets O_DIRECT).
    public var resources: [HostResource] {
        disks.flatMap { disk -> [HostResource] in
            let file = HostResource.file(path: disk.path, writable: !disk.isReadOnly)
            return disk.isDirect ? [file, file] : [file]
        }
    }

    private static func asciiProblem(_ text: String, _ range: ClosedRange<Int>) -> String? {
        let bytes = Array(text.utf8)
        guard range.contains(bytes.count) else { return "must be \(range.lowerBound)-\(range.upperBound) characters" }
        guard bytes.allSatisfy({ (0x20...0x7E).contains($0) }) else { return "must be printable ASCII" }
        return nil
    }
}
