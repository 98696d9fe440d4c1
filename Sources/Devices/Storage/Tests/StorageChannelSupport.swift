import DiskBackend
import Glibc
import GuestMemory
import HyperV
import LinuxSupport
import Logging
import StorageProtocol
import StorageVSC
import StorageVSP
import Synchronization
import SystemPackage
import VMBusClient
import VMBusHost
import VMBusProtocol
import VSPTestSupport

/// The guest's channel abstraction over a `FakeGuest`: the guest side of a channel to the real
/// storage VSP, served by the real `VSPChannel` and `ChannelWorker`, on rings in memfd-backed
/// guest RAM — so the guest's `StorageVSC` runs against the parent's code in one process.
struct FakeGuestChannel: VMBusChannel {
    let guest: FakeGuest

    var relID: UInt32 { guest.relID }
    var outgoingDataSize: Int { guest.writer.memory.dataSize }
    var incomingDataSize: Int { guest.reader.memory.dataSize }

    mutating func stage(_ type: PacketType, flags: PacketFlags, transactionID: UInt64, header: [UInt8],
                        payload: [UInt8]) -> Bool {
        do throws(RingError) {
            try guest.writer.write(type: type, flags: flags, transactionID: transactionID, header: header, payload: payload)
            return true
        } catch {
            return false
        }
    }

    mutating func publish() {
        if guest.writer.commit() { guest.signalHost() }
    }

    mutating func receive(into buffer: inout [UInt8]) -> PacketDescriptor? {
        let descriptor: PacketDescriptor?
        do throws(RingError) {
            descriptor = try guest.reader.next(into: &buffer)
        } catch {
            return nil
        }
        if descriptor != nil, guest.reader.commit() { guest.signalHost() }
        return descriptor
    }

    mutating func beginPolling() { guest.reader.beginPolling() }
    mutating func endPolling() -> Bool { guest.reader.endPolling() }
    mutating func signalHost() { guest.signalHost() }
    func signalEvent(connection: ConnectionID) {}
    var interruptCount: UInt64 { UInt64(guest.hostSignals) }
    func timestamp() -> UInt64 { MonotonicClock.nanoseconds() }
    func nanoseconds(from start: UInt64, to end: UInt64) -> UInt64 { end &- start }
    func ticks(nanoseconds: UInt64) -> UInt64 { nanoseconds }
    func relax() { usleep(20) }
}

/// Guest buffers in the fake guest's RAM.
struct FakeGuestMemory: StorageBufferMemory {
    let memory: GuestMemory

    func read(at address: UInt64, count: Int) -> [UInt8] {
        (try? memory.read(at: GuestPhysicalAddress(address), count: count)) ?? []
    }

    func write(_ bytes: [UInt8], at address: UInt64) {
        try? memory.write(bytes, at: GuestPhysicalAddress(address))
    }

    func fillPattern(at address: UInt64, length: Int, diskOffset: UInt64, seed: UInt64) {
        write(StoragePattern.bytes(at: diskOffset, count: length, seed: seed), at: address)
    }

    func checkPattern(at address: UInt64, length: Int, diskOffset: UInt64, seed: UInt64) -> Bool {
        read(at: address, count: length) == StoragePattern.bytes(at: diskOffset, count: length, seed: seed)
    }
}

/// A partition as the storage VSP sees it in tests: facts recorded, nothing else.
final class RecordingHost: VSPHost {
    let partitionName = "storage-test"
    let processorCount: UInt32
    private let facts = Mutex<[String: String]>([:])

    init(processorCount: UInt32 = 2) { self.processorCount = processorCount }

    func raise(vp: UInt32, sint: UInt8) {}
    func registerEventConnection(_ connection: ConnectionID, event: EventFD) {}
    func unregisterEventConnection(_ connection: ConnectionID) {}
    func report(_ facts: [String: String]) { self.facts.withLock { $0.merge(facts) { _, new in new } } }
    func referenceTime() -> UInt64 { MonotonicClock.nanoseconds() / 100 }

    var reported: [String: String] { facts.withLock { $0 } }
}

/// A SCSI controller served in memory: real image files in a temporary directory, the real VSP
/// and sessions, channels opened by fake guests in one shared guest RAM.
final class StorageRig {
    let directory: TemporaryDirectory
    let memory: GuestMemory
    let host = RecordingHost()
    let vsp: StorageVSP
    var guests: [FakeGuest] = []
    static let instance = GUID(0x1234_5678, 0x9ABC, 0x4DEF, 0x8123_4567_89AB_CDEF)

    /// Guest RAM layout: rings from page 16 (FakeGuest's default), buffers from `bufferBase`.
    static let ramBytes = 32 << 20
    static let bufferBase: UInt64 = 8 << 20

    /// - Parameter disks: name, size, and settings of each disk (paths filled in).
    init(disks: [(name: String, size: UInt64, settings: StorageSettings.Disk)], subChannels: Int? = 2,
         maxTransferKiB: Int? = nil, base: String = "/tmp") throws {
        directory = try TemporaryDirectory(base: base)
        memory = try GuestMemory.create(name: "storage-rig", size: Self.ramBytes)
        var settings = StorageSettings(disks: [], subChannels: subChannels, maxTransferKiB: maxTransferKiB)
        var descriptors: [OwnedDescriptor] = []
        for disk in disks {
            let path = directory.file(disk.name)
            if access(path, F_OK) != 0 { _ = try DiskImage.create(at: path, size: disk.size) }
            var entry = disk.settings
            entry.path = path
            settings.disks.append(entry)
            descriptors += try Self.open(entry)
        }
        vsp = try StorageVSP(settings: settings, instance: Self.instance, memory: memory, host: host,
                             logger: Logger(label: "storage-rig"))
        try vsp.apply(settings, resources: descriptors)
        self.settings = settings
    }

    private(set) var settings: StorageSettings

    /// Opens a disk's files as the root would.
    static func open(_ disk: StorageSettings.Disk) throws -> [OwnedDescriptor] {
        try StorageSettings(disks: [disk]).resources.map { resource in
            guard case .file(let path, let writable) = resource else { throw SystemError("resource", errno: .invalidArgument) }
            let raw = Glibc.open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
            guard raw >= 0 else { throw SystemError.current("open \(path)") }
            return OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
        }
    }

    /// New settings, opened as the root would, applied as `change` applies them.
    func apply(_ new: StorageSettings) throws {
        try vsp.apply(new, resources: new.disks.flatMap { try Self.open($0) })
        settings = new
    }

    /// Opens channel `index` (0: the primary) with rings at their own pages (`ringPages` per ring,
    /// control page included; `incomingPages` for the host→guest ring if it differs).
    func openChannel(_ index: UInt16 = 0, ringPages: Int = 32, incomingPages: Int? = nil) throws -> StorageVSC<FakeGuestChannel> {
        let incoming = incomingPages ?? ringPages
        let first = 16 + UInt64(index) * 128
        let guest = try FakeGuest(device: vsp, relID: 10 + UInt32(index), subChannelIndex: index,
                                  ringPages: ringPages, guestToHostPages: (0..<UInt64(ringPages)).map { first + $0 },
                                  hostToGuestPages: (0..<UInt64(incoming)).map { first + 64 + $0 },
                                  memory: memory)
        guests.append(guest)
        return StorageVSC(channel: FakeGuestChannel(guest: guest), version: index == 0 ? nil : negotiated)
    }

    var negotiated: StorageProtocolVersion? {
        host.reported[vsp.factPrefix + "protocol"].flatMap { text in
            let parts = text.split(separator: ".").compactMap { UInt8($0) }
            return parts.count == 2 ? StorageProtocolVersion(major: parts[0], minor: parts[1]) : nil
        }
    }

    var guestMemory: FakeGuestMemory { FakeGuestMemory(memory: memory) }

    /// A guest buffer address for slot `index` of `size` bytes.
    static func buffer(_ index: Int, size: Int = 1 << 20) -> UInt64 { bufferBase + UInt64(index * size) }

    func path(_ name: String) -> String { directory.file(name) }

    deinit {
        for guest in guests { guest.close() }
    }
}

/// The bytes of a file region, read on the host.
func fileBytes(_ path: String, offset: UInt64, count: Int) -> [UInt8] {
    let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { Glibc.close(fd) }
    var bytes = [UInt8](repeating: 0, count: count)
    let read = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
    return read == count ? bytes : []
}
