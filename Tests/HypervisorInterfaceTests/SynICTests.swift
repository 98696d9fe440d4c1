import Foundation
import GuestMemory
import HyperV
import HypervisorInterface
import Synchronization
import Testing

@Suite("SynIC messages and SINTs (Docs/hyperv-interface.md §4)")
struct SynICTests {
    @Test func messageIsWrittenToTheSINTSlotAndRaisesTheSINT() throws {
        let fixture = try Fixture()
        fixture.enableSynIC()
        let result = fixture.partition.postMessage(vp: 0, sint: 2, type: .vmbus, payload: [1, 2, 3])
        #expect(result == .delivered)
        let slot = GuestPhysicalAddress(0x10000 + 2 * 256)
        #expect(try fixture.memory.load(UInt32.self, at: slot) == 1)
        #expect(try fixture.memory.load(UInt8.self, at: slot.advanced(by: 4)!) == 3)
        #expect(try fixture.memory.read(at: slot.advanced(by: 16)!, count: 3) == [1, 2, 3])
        #expect(fixture.environment.raised == ["0/2"])
    }

    @Test func messagesGoToTheTargetProcessorsPage() throws {
        let fixture = try Fixture()
        fixture.enableSynIC(vp: 0, simp: 0x10000, siefp: 0x11000)
        fixture.enableSynIC(vp: 1, simp: 0x12000, siefp: 0x13000)
        #expect(fixture.partition.postMessage(vp: 1, sint: 2, type: .vmbus, payload: [9]) == .delivered)
        #expect(try fixture.takeMessage(vp: 0) == nil)
        #expect(try fixture.takeMessage(vp: 1, simp: 0x12000)?.payload == [9])
        #expect(fixture.environment.raised == ["1/2"])
    }

    @Test func busySlotSetsMessagePendingAndEOMDeliversTheNext() throws {
        let fixture = try Fixture()
        fixture.enableSynIC()
        #expect(fixture.partition.postMessage(vp: 0, sint: 2, type: .vmbus, payload: [1]) == .delivered)
        #expect(fixture.partition.postMessage(vp: 0, sint: 2, type: .vmbus, payload: [2]) == .queued)
        let flags = GuestPhysicalAddress(0x10000 + 2 * 256 + 5)
        #expect(try fixture.memory.load(UInt8.self, at: flags) & 1 == 1, "msg_pending asks the guest for EOM")
        // The guest frees the slot and, seeing msg_pending, writes EOM: the next message arrives.
        #expect(try fixture.takeMessage()?.payload == [1])
        #expect(try fixture.takeMessage()?.payload == [2])
        #expect(try fixture.takeMessage() == nil)
        #expect(fixture.partition.processors[0].queuedMessageCount(sint: 2) == 0)
    }

    @Test func maskedSINTQueuesUntilUnmasked() throws {
        let fixture = try Fixture()
        fixture.enableSynIC()
        _ = fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.sint(2).rawValue, value: 0xF3 | (1 << 16))
        #expect(fixture.environment.sint(vp: 0, 2) == .init(vector: 0xF3, interruptsEnabled: false))
        #expect(fixture.partition.postMessage(vp: 0, sint: 2, type: .vmbus, payload: [4]) == .queued)
        #expect(try fixture.takeMessage() == nil, "nothing is written while masked")
        #expect(fixture.environment.raised.isEmpty, "nothing is injected while masked")
        _ = fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.sint(2).rawValue, value: 0xF3)
        #expect(try fixture.takeMessage()?.payload == [4])
        #expect(fixture.environment.raised == ["0/2"])
    }

    @Test func disabledSynICQueuesUntilEnabled() throws {
        let fixture = try Fixture()
        _ = fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.synicMessagePage.rawValue, value: 0x10001)
        _ = fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.sint(2).rawValue, value: 0xF3)
        #expect(fixture.partition.postMessage(vp: 0, sint: 2, type: .vmbus, payload: [5]) == .queued)
        #expect(fixture.environment.sint(vp: 0, 2)?.interruptsEnabled == false)
        _ = fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.synicControl.rawValue, value: 1)
        #expect(try fixture.takeMessage()?.payload == [5])
    }

    @Test func pollingSINTReceivesMessagesWithoutInterrupts() throws {
        let fixture = try Fixture()
        fixture.enableSynIC(sint: 6, vector: 0xF5)
        _ = fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.sint(6).rawValue, value: 0xF5 | (1 << 18))
        #expect(fixture.partition.postMessage(vp: 0, sint: 6, type: .vmbus, payload: [6]) == .delivered)
        #expect(try fixture.takeMessage(sint: 6)?.payload == [6])
        #expect(fixture.environment.raised.isEmpty)
    }

    @Test func fullQueueIsReported() throws {
        let fixture = try Fixture()
        fixture.enableSynIC()
        _ = fixture.partition.writeMSR(vp: 0, index: SyntheticMSR.sint(2).rawValue, value: 0xF3 | (1 << 16))
        for _ in 0..<HvVirtualProcessor.queueLimit {
            #expect(fixture.partition.postMessage(vp: 0, sint: 2, type: .vmbus, payload: []) == .queued)
        }
        #expect(fixture.partition.postMessage(vp: 0, sint: 2, type: .vmbus, payload: []) == .queueFull)
    }

    @Test func invalidTargetsAreRefused() throws {
        let fixture = try Fixture()
        #expect(fixture.partition.postMessage(vp: 5, sint: 2, type: .vmbus, payload: []) == nil)
        #expect(fixture.partition.postMessage(vp: 0, sint: 16, type: .vmbus, payload: []) == nil)
        #expect(fixture.partition.postMessage(vp: 0, sint: 2, type: .vmbus, payload: [UInt8](repeating: 0, count: 241)) == nil)
    }

    /// A host thread posts while a guest thread drains the slot the way Linux does; the race
    /// between the guest clearing the slot and the host setting msg_pending must lose nothing.
    @Test func eomRedeliveryUnderContentionLosesAndDuplicatesNothing() async throws {
        let fixture = try Fixture()
        fixture.enableSynIC()
        let count = 20_000
        let producer = Thread {
            var sequence: UInt32 = 0
            while sequence < UInt32(count) {
                var payload = [UInt8](repeating: 0, count: 4)
                payload.storeLittleEndian(sequence, at: 0)
                switch fixture.partition.postMessage(vp: 0, sint: 2, type: .vmbus, payload: payload) {
                case .delivered, .queued: sequence += 1
                case .queueFull, nil: usleep(10)
                }
            }
        }
        producer.start()
        var received: [UInt32] = []
        let deadline = Date().addingTimeInterval(60)
        while received.count < count && Date() < deadline {
            if let message = try fixture.takeMessage() {
                received.append(message.payload.littleEndian(UInt32.self, at: 0) ?? .max)
            }
        }
        #expect(received.count == count)
        #expect(received == (0..<UInt32(count)).map { $0 }, "in order, nothing lost, nothing twice")
    }
}

import Glibc
