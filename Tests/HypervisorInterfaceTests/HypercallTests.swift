import GuestMemory
import HyperV
import HypervisorInterface
import LinuxSupport
import Synchronization
import Testing

@Suite("Hypercalls (Docs/hyperv-interface.md §3)")
struct HypercallTests {
    let post = HypercallControl(code: .postMessage).rawValue

    func status(_ rax: UInt64) -> HypercallStatus { HypercallStatus(rawValue: UInt16(truncatingIfNeeded: rax)) }

    @Test func postMessageDeliversThePayloadToTheConnection() throws {
        let fixture = try Fixture()
        let receiver = RecordingReceiver()
        fixture.partition.connections.registerMessageConnection(ConnectionID(4), receiver: receiver)
        try fixture.writePostMessageInput(at: 0x5000, connection: 4, type: 1, payloadSize: 3, payload: [7, 8, 9])
        let rax = fixture.partition.hypercall(vp: 1, HypercallRegisters(control: post, input: 0x5000, output: 0))
        #expect(status(rax) == .success)
        #expect(receiver.messages.count == 1)
        #expect(receiver.messages.first?.0 == 1 && receiver.messages.first?.1 == .vmbus && receiver.messages.first?.2 == [7, 8, 9])
    }

    @Test func postMessageReturnsTheReceiversBackpressure() throws {
        let fixture = try Fixture()
        fixture.partition.connections.registerMessageConnection(ConnectionID(1), receiver: RecordingReceiver(status: .insufficientBuffers))
        try fixture.writePostMessageInput(at: 0x5000, connection: 1, type: 1, payloadSize: 0)
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: post, input: 0x5000, output: 0)))
                == .insufficientBuffers)
    }

    @Test func unknownConnectionIsInvalidConnectionID() throws {
        let fixture = try Fixture()
        try fixture.writePostMessageInput(at: 0x5000, connection: 99, type: 1, payloadSize: 0)
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: post, input: 0x5000, output: 0)))
                == .invalidConnectionID)
    }

    @Test func oversizePayloadIsInvalidParameter() throws {
        let fixture = try Fixture()
        fixture.partition.connections.registerMessageConnection(ConnectionID(1), receiver: RecordingReceiver())
        try fixture.writePostMessageInput(at: 0x5000, connection: 1, type: 1, payloadSize: 241)
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: post, input: 0x5000, output: 0)))
                == .invalidParameter)
        try fixture.writePostMessageInput(at: 0x5000, connection: 1, type: 1, payloadSize: 0xFFFF_FFFF)
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: post, input: 0x5000, output: 0)))
                == .invalidParameter)
    }

    @Test(arguments: [0 as UInt32, 0x8000_0010])
    func reservedMessageTypesAreInvalidParameter(_ type: UInt32) throws {
        let fixture = try Fixture()
        fixture.partition.connections.registerMessageConnection(ConnectionID(1), receiver: RecordingReceiver())
        try fixture.writePostMessageInput(at: 0x5000, connection: 1, type: type, payloadSize: 4)
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: post, input: 0x5000, output: 0)))
                == .invalidParameter)
    }

    @Test func misalignedInputIsInvalidAlignment() throws {
        let fixture = try Fixture()
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: post, input: 0x5004, output: 0)))
                == .invalidAlignment)
    }

    @Test func inputStraddlingAPageIsInvalidInput() throws {
        let fixture = try Fixture()
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: post, input: 0x5F08, output: 0)))
                == .invalidHypercallInput)
    }

    @Test(arguments: [UInt64(Fixture.memorySize), UInt64(Fixture.memorySize) - 128, 0xFFFF_FFFF_FFFF_F000])
    func inputOutsideGuestRAMIsInvalidInput(_ address: UInt64) throws {
        let fixture = try Fixture()
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: post, input: address, output: 0)))
                == .invalidHypercallInput)
    }

    @Test func repCountOnASimpleCallIsInvalidInput() throws {
        let fixture = try Fixture()
        fixture.partition.connections.registerMessageConnection(ConnectionID(1), receiver: RecordingReceiver())
        try fixture.writePostMessageInput(at: 0x5000, connection: 1, type: 1, payloadSize: 0)
        let withReps = post | (1 << 32)
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: withReps, input: 0x5000, output: 0)))
                == .invalidHypercallInput)
        let withHeader = post | (1 << 17)
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: withHeader, input: 0x5000, output: 0)))
                == .invalidHypercallInput)
    }

    @Test func fastPostMessageIsInvalidInput() throws {
        let fixture = try Fixture()
        let fast = HypercallControl(code: .postMessage, fast: true).rawValue
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: fast, input: 1, output: 0)))
                == .invalidHypercallInput)
    }

    @Test(arguments: [0x0002 as UInt64, 0x0046, 0x8001, 0xFFFF])
    func unknownCodesAreInvalidHypercallCode(_ code: UInt64) throws {
        let fixture = try Fixture()
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: code, input: 0, output: 0)))
                == .invalidHypercallCode)
    }

    @Test func signalEventSignalsTheConnectionsEventfd() throws {
        let fixture = try Fixture()
        let event = try EventFD()
        fixture.partition.connections.registerEventConnection(ConnectionID(0x2001), event: event)
        let fast = HypercallControl(code: .signalEvent, fast: true).rawValue
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: fast, input: 0x2001, output: 0)))
                == .success)
        #expect(event.consume() == 1)
        // The slow form reads the same input from memory.
        try fixture.memory.store(UInt64(0x2001), at: GuestPhysicalAddress(0x6000))
        let slow = HypercallControl(code: .signalEvent).rawValue
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: slow, input: 0x6000, output: 0)))
                == .success)
        #expect(event.consume() == 1)
    }

    /// An event connection whose eventfd another process shares is signalled through its relay,
    /// never written by the processor: that process could have made the write block (a blocking
    /// eventfd whose counter it filled), and the guest's processor would wait on it for good.
    @Test func signalEventOnASharedEventfdGoesThroughItsRelay() throws {
        final class Relay: HvEventRelay {
            let relayed = Mutex<[ObjectIdentifier]>([])
            func signal(_ event: EventFD) { relayed.withLock { $0.append(ObjectIdentifier(event)) } }
        }
        let fixture = try Fixture()
        let full = try EventFD()
        full.signal(0xFFFF_FFFF_FFFF_FFFE)
        let relay = Relay()
        fixture.partition.connections.registerEventConnection(ConnectionID(0x2001), event: full, relay: relay)
        try fixture.memory.store(UInt64(0x2001), at: GuestPhysicalAddress(0x6000))
        let slow = HypercallControl(code: .signalEvent).rawValue
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: slow, input: 0x6000, output: 0)))
                == .success)
        #expect(fixture.partition.signalEventFastPathExit(connectionID: 0x2001) ^ 0x2001 == 0)
        #expect(relay.relayed.withLock { $0 } == [ObjectIdentifier(full), ObjectIdentifier(full)])
        #expect(full.consume() == 0xFFFF_FFFF_FFFF_FFFE, "the processor wrote nothing itself")
    }

    @Test func signalEventOnAnUnknownConnectionIsInvalidConnectionID() throws {
        let fixture = try Fixture()
        let fast = HypercallControl(code: .signalEvent, fast: true).rawValue
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: fast, input: 0x2999, output: 0)))
                == .invalidConnectionID)
    }

    @Test func signalEventWithAnOutOfRangeFlagIsInvalidParameter() throws {
        let fixture = try Fixture()
        fixture.partition.connections.registerEventConnection(ConnectionID(7), event: try EventFD())
        let fast = HypercallControl(code: .signalEvent, fast: true).rawValue
        #expect(status(fixture.partition.hypercall(vp: 0, HypercallRegisters(control: fast, input: 7 | (2048 << 32), output: 0)))
                == .invalidParameter)
    }

    @Test func fastPathMissAnswersStatusXorConnection() throws {
        let fixture = try Fixture()
        // The page XORs RAX with the connection ID after the OUT, so the final value is the status.
        let rax = fixture.partition.signalEventFastPathExit(connectionID: 0x2005)
        #expect(UInt16(truncatingIfNeeded: rax ^ 0x2005) == HypercallStatus.invalidConnectionID.rawValue)
        let event = try EventFD()
        fixture.partition.connections.registerEventConnection(ConnectionID(0x2005), event: event)
        #expect(fixture.partition.signalEventFastPathExit(connectionID: 0x2005) ^ 0x2005 == 0)
        #expect(event.consume() == 1)
    }
}
