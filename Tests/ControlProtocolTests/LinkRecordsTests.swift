import ControlProtocol
import LinuxSupport
import Testing

/// The records of a parent restart: saved state, numbered guest messages, commits and their
/// acknowledgements (Docs/architecture.md, "A parent that restarts").
@Suite("Control protocol: restart records")
struct LinkRecordsTests {
    static let records = [StateRecord(key: 0x0101_0000_0000_0000, bytes: [1, 2, 3]),
                          StateRecord(key: 0x0103_0002_0000_0007, bytes: [UInt8](repeating: 0xAB, count: 4096))]

    static let rootMessages: [RootMessage] = [
        .savedState(partitionID: 7, records: records),
        .sequencedGuestMessage(SequencedGuestMessage(partitionID: 7, sequence: 1 << 40, vp: 1, connectionID: 4, messageType: 1,
                                                     payload: [UInt8](repeating: 9, count: 240))),
    ]

    static let parentMessages: [ParentMessage] = [
        .commitState(StateCommit(partitionID: 7, sequence: 12, isFinal: true,
                                 records: records + [StateRecord(key: 99, bytes: nil)],
                                 posts: [SynICPost(vp: 0, sint: 2, messageType: 1, payload: [1, 2]),
                                         SynICPost(vp: 1, sint: 5, messageType: 0x8000_0001, payload: [])])),
        .commitState(StateCommit(partitionID: 7, sequence: 0, isFinal: false, records: [], posts: [])),
        .completed(partitionID: 7, jobs: 1 << 33, sequence: 12),
    ]

    @Test(arguments: rootMessages)
    func rootRecordsRoundTrip(_ message: RootMessage) throws {
        #expect(try RootMessage(parsing: message.bytes) == message)
    }

    @Test(arguments: parentMessages)
    func parentRecordsRoundTrip(_ message: ParentMessage) throws {
        #expect(try ParentMessage(parsing: message.bytes) == message)
    }

    /// Every prefix of a record is refused with a typed error.
    @Test(arguments: rootMessages)
    func truncatedRootRecordsAreRefused(_ message: RootMessage) {
        let bytes = message.bytes
        for length in 0..<bytes.count {
            #expect(throws: ControlProtocolError.self) { _ = try RootMessage(parsing: Array(bytes.prefix(length))) }
        }
    }

    @Test(arguments: parentMessages)
    func truncatedParentRecordsAreRefused(_ message: ParentMessage) {
        let bytes = message.bytes
        for length in 0..<bytes.count {
            #expect(throws: ControlProtocolError.self) { _ = try ParentMessage(parsing: Array(bytes.prefix(length))) }
        }
    }

    /// Saved state never carries a deletion, and records past their limits are refused.
    @Test func savedStateLimitsAreEnforcedWhenParsing() {
        var deletion = RootMessage.savedState(partitionID: 7, records: [StateRecord(key: 1, bytes: [1])]).bytes
        // The presence byte of the only record (after version, kind, partition, count, key).
        deletion[2 + 2 + 4 + 4 + 8] = 0
        #expect(throws: ControlProtocolError.self) { _ = try RootMessage(parsing: Array(deletion.prefix(2 + 2 + 4 + 4 + 8 + 1))) }
        let tooBig = RootMessage.savedState(partitionID: 7, records: [StateRecord(key: 1, bytes: [UInt8](repeating: 0,
                                                                                             count: StateRecord.maximumBytes + 1))])
        #expect(throws: ControlProtocolError.self) { _ = try RootMessage(parsing: tooBig.bytes) }
    }

    /// A large change is cut into parts that each fit one datagram; only the last is final, and
    /// together they carry everything, in order.
    @Test func aLargeCommitIsCutIntoPartsThatEachFitADatagram() throws {
        let records = (0..<40).map { StateRecord(key: UInt64($0), bytes: [UInt8](repeating: UInt8($0), count: 32 << 10)) }
            + [StateRecord(key: 1000, bytes: nil)]
        let posts = (0..<600).map { SynICPost(vp: 0, sint: 2, messageType: 1, payload: [UInt8](repeating: UInt8($0 % 256), count: 240)) }
        let parts = StateCommit.parts(partitionID: 3, sequence: 77, records: records, posts: posts)
        #expect(parts.count > 20)
        #expect(parts.dropLast().allSatisfy { !$0.isFinal } && parts.last?.isFinal == true)
        for part in parts {
            let bytes = ParentMessage.commitState(part).bytes
            #expect(bytes.count <= SequencedPacketSocket.maximumMessageSize)
            #expect(try ParentMessage(parsing: bytes) == .commitState(part))
            #expect(part.sequence == 77 && part.partitionID == 3)
        }
        #expect(parts.flatMap(\.records) == records)
        #expect(parts.flatMap(\.posts) == posts)
        #expect(StateCommit.parts(partitionID: 3, sequence: 0, records: [], posts: []).count == 1)
    }
}
