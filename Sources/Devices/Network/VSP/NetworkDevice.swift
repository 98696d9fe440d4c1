import DeviceHost
import DeviceModel
import LinuxSupport
import NetworkProtocol
import VMBusProtocol
import VirtualSwitch

/// The synthetic network adapter as a partition's device: `{"kind": "nic", "switch": "…"}`. The
/// guest's netvsc (Linux `hv_netvsc`, or the Embedded Swift one) binds to it; its frames go to
/// the named virtual switch of the parent (Docs/network.md).
public enum NetworkDevice: ParentDevice {
    public struct Settings: Codable, Sendable, Equatable {
        /// The virtual switch the adapter plugs into (`hv switch create`).
        public var switchName: String
        /// The permanent MAC address, "00:15:5d:12:34:56"; derived from the partition and the
        /// instance when absent.
        public var mac: String?
        /// The most channels (queues) the guest may use: 1 + sub-channels; by default the
        /// partition's processor count, at most 8.
        public var queues: Int?
        /// Whether the cable is plugged in; changing it on a running partition tells the guest
        /// (RNDIS media connect / disconnect).
        public var connected: Bool?
        /// Whether the guest may send and receive VLAN-tagged frames (Hyper-V's trunk mode);
        /// by default the NIC's port is untagged and drops them (`SwitchDropReason.vlanTagged`).
        public var vlanTrunk: Bool?

        enum CodingKeys: String, CodingKey {
            case switchName = "switch", mac, queues, connected, vlanTrunk
        }

        public init(switchName: String, mac: String? = nil, queues: Int? = nil, connected: Bool? = nil,
                    vlanTrunk: Bool? = nil) {
            self.switchName = switchName
            self.mac = mac
            self.queues = queues
            self.connected = connected
            self.vlanTrunk = vlanTrunk
        }
    }

    public static let kind = "nic"
    public static let summary = "synthetic network adapter (netvsc) on a virtual switch"
    public static let bus = DeviceBus.vmbus(classID: .network)
    public static var maximumPerPartition: Int { 8 }
    public static var changeableWhileRunning: Bool { true }
    /// The most queues a guest may use (Linux's netvsc asks for at most its processor count).
    public static let maximumQueues = 8

    public static func problem(with settings: Settings) -> String? {
        if let reason = SwitchName.problem(settings.switchName) { return "switch: \(reason)" }
        if let mac = settings.mac {
            guard let address = MACAddress(text: mac) else { return "mac \"\(mac)\" is not six hex bytes (00:15:5d:12:34:56)" }
            if address.isGroup || address == .zero { return "mac \(mac) is a group or zero address; a NIC needs a unicast one" }
        }
        if let queues = settings.queues, !(1...maximumQueues).contains(queues) {
            return "queues must be between 1 and \(maximumQueues)"
        }
        return nil
    }

    public static func virtualSwitches(for settings: Settings) -> [String] { [settings.switchName] }

    /// Only `connected` changes while the partition runs: a NIC that moves to another switch or
    /// MAC address is removed and added again (the guest sees a new adapter).
    public static func problem(changing current: Settings, to new: Settings) -> String? {
        guard current.switchName == new.switchName, current.mac == new.mac, current.queues == new.queues,
              (current.vlanTrunk ?? false) == (new.vlanTrunk ?? false) else {
            return "moved to another switch, MAC address, queue count or VLAN mode (only \"connected\" changes)"
        }
        return nil
    }

    public static func make(_ settings: Settings, instance: GUID, resources: [OwnedDescriptor],
                            context: any DeviceContext) throws(DeviceError) -> DeviceInstance {
        guard let directory = context.sharedBackend(SwitchDirectory.self),
              let virtualSwitch = directory.lookup(settings.switchName) else {
            throw .unavailable(kind: kind, reason: "the parent has no virtual switch \"\(settings.switchName)\"")
        }
        let address = settings.mac.flatMap { MACAddress(text: $0) }
            ?? defaultAddress(partition: context.partitionName, instance: instance)
        let queues = settings.queues ?? min(Int(context.processorCount), maximumQueues)
        do throws(SystemError) {
            return .vmbus(try NetworkAdapter(
                instance: instance, address: address, queues: max(1, queues), connected: settings.connected ?? true,
                vlanTrunk: settings.vlanTrunk ?? false, switch: virtualSwitch, memory: context.memory, host: context))
        } catch {
            throw .unavailable(kind: kind, reason: "cannot plug into switch \(settings.switchName): \(error)")
        }
    }

    public static func change(_ device: DeviceInstance, to settings: Settings, resources: [OwnedDescriptor],
                              context: any DeviceContext) throws(DeviceError) {
        guard case .vmbus(let provider) = device, let adapter = provider as? NetworkAdapter else {
            throw .unavailable(kind: kind, reason: "not a network adapter")
        }
        let address = settings.mac.flatMap { MACAddress(text: $0) }
            ?? defaultAddress(partition: context.partitionName, instance: adapter.instance)
        guard settings.switchName == adapter.virtualSwitch.name, address == adapter.permanentAddress else {
            throw .invalidSettings(kind: kind, reason: "only \"connected\" can change while the partition runs; "
                                   + "remove the NIC and add it again to move it to another switch or MAC address")
        }
        adapter.setLinkConnected(settings.connected ?? true)
    }

    /// The MAC address of a NIC that names none: Hyper-V's organizationally unique identifier
    /// 00:15:5D and three bytes of an FNV-1a hash of the partition's name and the instance GUID,
    /// so the guest sees the same address every time it runs.
    public static func defaultAddress(partition: String, instance: GUID) -> MACAddress {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in Array(partition.utf8) + [0] + instance.wireBytes {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
        }
        let folded = (hash ^ (hash >> 24) ^ (hash >> 48)) & 0xFF_FFFF
        return MACAddress(rawValue: 0x0015_5D00_0000 | folded)
    }
}

/// The rules for a virtual switch's name, shared by the switch API and the NIC's settings.
public enum SwitchName {
    /// The longest name.
    public static let maximumLength = 32

    /// Why `name` cannot name a switch, or `nil`: 1-32 letters, digits, '-', '_' or '.', not
    /// starting with '.' or '-'.
    public static func problem(_ name: String) -> String? {
        guard !name.isEmpty, name.utf8.count <= maximumLength else {
            return "a switch name is 1 to \(maximumLength) characters"
        }
        guard name.utf8.allSatisfy({ byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2D || byte == 0x5F || byte == 0x2E
        }), let first = name.utf8.first, first != 0x2E, first != 0x2D else {
            return "\"\(name)\" is not a switch name (letters, digits, '-', '_', '.')"
        }
        return nil
    }
}

extension MACAddress {
    /// Parses "00:15:5d:12:34:56" (or with '-' separators, or twelve bare hex digits).
    public init?(text: String) {
        let digits = Array(text.utf8).filter { $0 != UInt8(ascii: ":") && $0 != UInt8(ascii: "-") }
        guard digits.count == 12, text.utf8.count == 12 || text.utf8.count == 17 else { return nil }
        self.init(hexDigits: digits)
    }

    /// "00:15:5d:12:34:56".
    public var text: String {
        let digits = hexDigits
        return stride(from: 0, to: 12, by: 2).map { String(decoding: digits[$0..<($0 + 2)], as: UTF8.self) }
            .joined(separator: ":")
    }
}
