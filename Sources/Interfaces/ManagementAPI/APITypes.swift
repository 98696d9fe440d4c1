import DeviceModel

/// What `GET /v1/partitions/{name}` returns.
public struct PartitionInfo: Codable, Sendable, Equatable {
    public var id: UInt32
    public var name: String
    /// created, running, paused, stopped or crashed.
    public var state: String
    /// Why it stopped or crashed.
    public var reason: String?
    public var processors: Int
    public var memoryMiB: Int
    public var devices: [DeviceSummary]
    /// Seconds since the partition was created.
    public var uptimeSeconds: Double
    /// Facts the parent partition reported (e.g. heartbeat.sequence).
    public var status: [String: String]
    /// The processor controls in force (nil from a root that has none).
    public var cpu: ProcessorControlsInfo?

    public init(id: UInt32, name: String, state: String, reason: String?, processors: Int, memoryMiB: Int,
                devices: [DeviceSummary], uptimeSeconds: Double, status: [String: String],
                cpu: ProcessorControlsInfo? = nil) {
        self.id = id
        self.name = name
        self.state = state
        self.reason = reason
        self.processors = processors
        self.memoryMiB = memoryMiB
        self.devices = devices
        self.uptimeSeconds = uptimeSeconds
        self.status = status
        self.cpu = cpu
    }
}

/// A partition's device as `hv partition show` lists it.
public struct DeviceSummary: Codable, Sendable, Equatable {
    public var kind: String
    /// The instance GUID the guest sees.
    public var instance: String
    /// Its settings as they are now (for example a SCSI controller's disks), so a client can
    /// change one and send them back with `PUT .../devices/{device}`.
    public var settings: JSONValue?

    public init(kind: String, instance: String, settings: JSONValue? = nil) {
        self.kind = kind
        self.instance = instance
        self.settings = settings
    }
}

/// What `GET /v1/root` returns.
public struct RootInfo: Codable, Sendable, Equatable {
    public var version: String
    public var processID: Int32
    public var parentConnected: Bool
    public var partitions: Int
    /// How processor controls are enforced ("cgroup v1 (…)"), or why they are not.
    public var processorControls: String?

    public init(version: String, processID: Int32, parentConnected: Bool, partitions: Int,
                processorControls: String? = nil) {
        self.version = version
        self.processID = processID
        self.parentConnected = parentConnected
        self.partitions = partitions
        self.processorControls = processorControls
    }
}

/// `POST /v1/partitions/{name}/actions` body.
public struct PartitionAction: Codable, Sendable, Equatable {
    /// start, pause, resume, stop or shutdown.
    public var action: String

    public init(action: String) { self.action = action }

    public static let known = ["start", "pause", "resume", "stop", "shutdown"]
}

/// `GET /v1/partitions/{name}/console` result.
public struct ConsoleOutput: Codable, Sendable, Equatable {
    public var lines: [String]
    public init(lines: [String]) { self.lines = lines }
}

/// Every error response: one sentence.
public struct APIError: Codable, Sendable, Equatable, Error, CustomStringConvertible {
    public var error: String
    public init(error: String) { self.error = error }
    public var description: String { error }
}

/// The product version reported by `hv` and the root.
public let hypervisorVersion = "0.1.0"
