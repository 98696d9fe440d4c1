import GuestMemory
import HyperV
import LinuxSupport
import NetworkProtocol
import NetworkVSC
import NetworkVSP
import Synchronization
import VMBusClient
import VMBusHost
import VMBusProtocol
import VSPTestSupport
import VirtualSwitch

/// The guest's end of a channel for the VSC, over the very ring pages the parent's worker serves
/// (the host's implementation of `VMBusChannel`, as in VMBusClientTests, with headers for
/// GPA-direct packets).
struct TestChannel: VMBusChannel {
    let relID: UInt32
    var writer: RingWriter<GuestRingMemory>
    var reader: RingReader<GuestRingMemory>
    let doorbell: EventFD
    let interrupts: TestCounter

    var outgoingDataSize: Int { writer.memory.dataSize }
    var incomingDataSize: Int { reader.memory.dataSize }

    mutating func stage(_ type: PacketType, flags: PacketFlags, transactionID: UInt64, header: [UInt8],
                        payload: [UInt8]) -> Bool {
        do throws(RingError) {
            try writer.write(type: type, flags: flags, transactionID: transactionID, header: header, payload: payload)
            return true
        } catch {
            return false
        }
    }

    mutating func publish() { if writer.commit() { doorbell.signal() } }

    mutating func receive(into buffer: inout [UInt8]) -> PacketDescriptor? {
        let descriptor: PacketDescriptor?
        do throws(RingError) {
            descriptor = try reader.next(into: &buffer)
        } catch {
            return nil
        }
        if descriptor != nil, reader.commit() { doorbell.signal() }
        return descriptor
    }

    mutating func beginPolling() { reader.beginPolling() }
    mutating func endPolling() -> Bool { reader.endPolling() }
    mutating func signalHost() { doorbell.signal() }
    func signalEvent(connection: ConnectionID) {}
    var interruptCount: UInt64 { interrupts.value }
    func timestamp() -> UInt64 { MonotonicClock.nanoseconds() }
    func nanoseconds(from start: UInt64, to end: UInt64) -> UInt64 { end &- start }
    func ticks(nanoseconds: UInt64) -> UInt64 { nanoseconds }
    func relax() { MonotonicClock.sleep(.microseconds(20)) }
}

/// The reason a worker gave its channel up, if it did.
final class FailureBox: Sendable {
    private let reason = Mutex<String?>(nil)
    func set(_ value: String) { reason.withLock { $0 = value } }
    var value: String? { reason.withLock { $0 } }
}

final class TestCounter: Sendable {
    private let count = Atomic<UInt64>(0)
    func add() { count.wrappingAdd(1, ordering: .relaxed) }
    var value: UInt64 { count.load(ordering: .relaxed) }
}

/// Contiguous guest pages as the VSC's buffer: the memfd RAM both sides map.
struct MemoryBuffer: SharedBuffer {
    let memory: GuestMemory
    let physicalAddress: UInt64
    let size: Int

    func read(at offset: Int, count: Int, into buffer: inout [UInt8], bufferOffset: Int) {
        // In bounds by the protocol's contract; a failure here is a test bug.
        try? memory.read(at: GuestPhysicalAddress(physicalAddress + UInt64(offset)), into: &buffer,
                         bufferOffset: bufferOffset, count: count)
    }

    func write(_ bytes: [UInt8], from: Int, count: Int, at offset: Int) {
        try? memory.write(bytes, from: from, count: count, at: GuestPhysicalAddress(physicalAddress + UInt64(offset)))
    }

    func load32(at offset: Int) -> UInt32 {
        (try? memory.load(UInt32.self, at: GuestPhysicalAddress(physicalAddress + UInt64(offset)))) ?? 0
    }

    var pageNumbers: [UInt64] { (0..<UInt64(size / 4096)).map { physicalAddress / 4096 + $0 } }
}

/// One NIC of a partition played in memory: the real `NetworkAdapter` on a real switch, its
/// primary channel served by a real `ChannelWorker` over rings in memfd-backed guest RAM, the
/// buffers published as GPADLs in a real `GPADLRegistry`, and the guest's real `NetworkVSC`.
///
/// Guest RAM (4 KiB pages): rings at 16…, the receive buffer at 1 MiB, the send buffer after
/// it, the large-frame buffer after that.
final class AdapterHarness {
    static let relID: UInt32 = 7
    static let ringPages = 32
    static let receiveGPADL: UInt32 = 0xE1E11
    static let sendGPADL: UInt32 = 0xE1E12
    static let ringGPADL: UInt32 = 0xE1E10

    let memory: GuestMemory
    let registry = GPADLRegistry()
    let host = FakeVSPHost(partitionName: "test", processorCount: 1)
    let adapter: NetworkAdapter
    let worker: ChannelWorker
    let failures = FailureBox()
    var vsc: NetworkVSC<TestChannel, MemoryBuffer>
    let receive: MemoryBuffer
    let send: MemoryBuffer

    init(switch virtualSwitch: VirtualSwitch, address: MACAddress, receivePages: Int = 512, sendPages: Int = 255,
         receiveOverlapsRing: Bool = false, holdNanoseconds: UInt64 = NetworkAdapter.defaultHoldNanoseconds) throws {
        let total = (1 << 20) + (receivePages + sendPages + 8) * 4096
        memory = try GuestMemory.create(name: "nic", size: total)
        let toHost = (0..<UInt64(Self.ringPages)).map { 16 + $0 }
        let toGuest = (0..<UInt64(Self.ringPages)).map { 16 + UInt64(Self.ringPages) + $0 }
        registry.publish(handle: Self.ringGPADL, channel: Self.relID, byteOffset: 0,
                         byteCount: UInt32(2 * Self.ringPages * 4096), pageNumbers: toHost + toGuest)
        let receiveBase: UInt64 = receiveOverlapsRing ? 16 * 4096 : 1 << 20
        receive = MemoryBuffer(memory: memory, physicalAddress: receiveBase, size: receivePages * 4096)
        send = MemoryBuffer(memory: memory, physicalAddress: (1 << 20) + UInt64(receivePages) * 4096, size: sendPages * 4096)
        let large = MemoryBuffer(memory: memory, physicalAddress: send.physicalAddress + UInt64(sendPages) * 4096,
                                 size: 8 * 4096)
        registry.publish(handle: Self.receiveGPADL, channel: Self.relID, byteOffset: 0, byteCount: UInt32(receive.size),
                         pageNumbers: receive.pageNumbers)
        registry.publish(handle: Self.sendGPADL, channel: Self.relID, byteOffset: 0, byteCount: UInt32(send.size),
                         pageNumbers: send.pageNumbers)
        adapter = try NetworkAdapter(instance: GUID(1, 2, 3, UInt64(address.rawValue)), address: address, queues: 1,
                                     connected: true, switch: virtualSwitch, memory: memory, host: host,
                                     holdNanoseconds: holdNanoseconds)
        let guestSignal = try EventFD()
        let interrupts = TestCounter()
        let channel = try VSPChannel(
            relID: Self.relID, incoming: GuestRingMemory(memory: memory, pages: toHost[...]),
            outgoing: GuestRingMemory(memory: memory, pages: toGuest[...]), targetVP: 0, guestSignal: guestSignal,
            signalGuest: { _ in interrupts.add() }, gpadls: registry.view(channel: Self.relID))
        guard let session = adapter.openSession(ChannelOpening(relID: Self.relID, targetVP: 0)) else {
            throw FakeGuest.HarnessError.refused
        }
        let failures = failures
        worker = try ChannelWorker(channel: channel, session: session) { reason in failures.set(reason) }
        let guestChannel = TestChannel(
            relID: Self.relID, writer: try RingWriter(memory: GuestRingMemory(memory: memory, pages: toHost[...])),
            reader: try RingReader(memory: GuestRingMemory(memory: memory, pages: toGuest[...])), doorbell: guestSignal,
            interrupts: interrupts)
        vsc = NetworkVSC(channel: guestChannel, receive: receive, receiveGPADL: Self.receiveGPADL, send: send,
                         sendGPADL: Self.sendGPADL, large: large)
    }

    deinit {
        worker.stop()
        adapter.detach()
    }

    /// Frames received within `seconds` (whole frames), answering nothing.
    func collect(count: Int, within seconds: Double = 10) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        let deadline = MonotonicClock.nanoseconds() + UInt64(seconds * 1e9)
        while frames.count < count && MonotonicClock.nanoseconds() < deadline {
            if vsc.poll(copyFrames: true, { frames.append($0.bytes) }) == 0 { MonotonicClock.sleep(.microseconds(50)) }
        }
        return frames
    }
}

/// A guest on a thread of its own: its harness is built there and polls, answering ARP and
/// pings for `address`, until stopped. Frames it receives that are not for its endpoint are
/// counted.
final class ServingGuest: Sendable {
    private let stopFlag = Atomic<Bool>(false)
    private let readyFlag = Atomic<Bool>(false)
    let received = Atomic<Int>(0)
    private let thread: Mutex<OSThread?> = Mutex(nil)
    let failure = Mutex<String?>(nil)

    init(switch virtualSwitch: VirtualSwitch, mac: MACAddress, address: UInt32) throws {
        let started = try OSThread.spawn(name: "guest") { [self] in
            do {
                let harness = try AdapterHarness(switch: virtualSwitch, address: mac)
                try harness.vsc.start()
                var endpoint = IPv4Endpoint(macAddress: harness.vsc.macAddress, address: address)
                readyFlag.store(true, ordering: .releasing)
                while !stopFlag.load(ordering: .acquiring) {
                    var replies: [[UInt8]] = []
                    let read = harness.vsc.poll(copyFrames: true) { frame in
                        switch endpoint.handle(frame.bytes) {
                        case .reply(let reply): replies.append(reply)
                        default: received.wrappingAdd(1, ordering: .relaxed)
                        }
                    }
                    for reply in replies { _ = harness.vsc.transmit(reply) }
                    harness.vsc.flush()
                    if read == 0 { MonotonicClock.sleep(.microseconds(20)) }
                }
            } catch {
                failure.withLock { $0 = "\(error)" }
                readyFlag.store(true, ordering: .releasing)
            }
        }
        thread.withLock { $0 = started }
    }

    /// Waits until the guest's NIC is up (or failed).
    func waitUntilReady(seconds: Double = 10) -> Bool {
        let deadline = MonotonicClock.nanoseconds() + UInt64(seconds * 1e9)
        while !readyFlag.load(ordering: .acquiring) && MonotonicClock.nanoseconds() < deadline {
            MonotonicClock.sleep(.milliseconds(5))
        }
        return readyFlag.load(ordering: .acquiring) && failure.withLock({ $0 }) == nil
    }

    func stop() {
        stopFlag.store(true, ordering: .releasing)
        thread.withLock { $0.take() }?.join()
    }

    deinit { stop() }
}
