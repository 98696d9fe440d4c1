import Foundation
import Glibc
import Privilege
@testable import RootScheduler
import Synchronization
import Testing

/// A user database that answers only when a test lets it, and counts what it was asked.
final class GatedUserDatabase: Sendable {
    private let open = Atomic<Bool>(false)
    private let asked = Mutex<[UserDirectory.Peer]>([])

    /// What the lookups were asked, in order.
    var questions: [UserDirectory.Peer] { asked.withLock { $0 } }

    /// Lets every lookup (waiting or to come) answer.
    func answer() { open.store(true, ordering: .releasing) }

    /// The lookup: once the gate opens (or 30 s pass, so a failed test leaves no thread behind),
    /// unlisted unless the UID is 0 (root) or below 1000.
    var lookup: UserDirectory.Lookup {
        { [self] peer in
            asked.withLock { $0.append(peer) }
            for _ in 0..<30_000 where !open.load(ordering: .acquiring) { usleep(1000) }
            return .success(UserIdentity(uid: peer.uid, gid: peer.gid, name: peer.uid < 1000 ? "user\(peer.uid)" : nil))
        }
    }
}

@Suite("The user database, asked off the API's threads")
struct UserDirectoryTests {
    static let peer = UserDirectory.Peer(uid: 3_999_100, gid: 100)

    @Test("everyone waiting for one peer shares one lookup, and its answer is kept")
    func onePeerIsLookedUpOnceAndItsAnswerKept() async throws {
        let database = GatedUserDatabase()
        let directory = UserDirectory(timeout: .seconds(30), lookup: database.lookup)
        let waiting = (0..<5).map { _ in Task { await directory.user(Self.peer) } }
        for _ in 0..<1000 where directory.waiting < 5 { try await Task.sleep(for: .milliseconds(5)) }
        #expect(directory.waiting == 5, "all five wait for the one lookup")
        database.answer()
        for task in waiting {
            #expect(try await task.value.get() == UserIdentity(uid: Self.peer.uid, gid: Self.peer.gid))
        }
        #expect(database.questions == [Self.peer])
        guard case .answered = directory.start(Self.peer, waiter: { _ in Issue.record("a kept answer looked up again") }) else {
            Issue.record("the answer was not kept")
            return
        }
        #expect(database.questions.count == 1)
    }

    @Test("a database that does not answer within the timeout fails the wait, and its late answer is kept")
    func aLateAnswerFailsTheWaitAndIsKept() async throws {
        let database = GatedUserDatabase()
        let directory = UserDirectory(timeout: .milliseconds(100), lookup: database.lookup)
        // The database has not answered (its gate is shut): the deadline ended the wait.
        #expect(await directory.user(Self.peer) == .failure(.timedOut))
        database.answer()
        while directory.answersKept == 0 { try await Task.sleep(for: .milliseconds(5)) }
        #expect(try await directory.user(Self.peer).get().uid == Self.peer.uid)
        #expect(database.questions.count == 1)
    }

    @Test("no more than maximumLookups peers are looked up at once; a peer beyond them is refused, not queued")
    func lookupsAtOnceAreBounded() async throws {
        let database = GatedUserDatabase()
        let directory = UserDirectory(timeout: .seconds(30), maximumLookups: 2, lookup: database.lookup)
        let peers = (0..<3).map { UserDirectory.Peer(uid: 3_999_200 + uid_t($0), gid: 100) }
        let first = Task { await directory.user(peers[0]) }
        let second = Task { await directory.user(peers[1]) }
        while database.questions.count < 2 { try await Task.sleep(for: .milliseconds(5)) }
        #expect(await directory.user(peers[2]) == .failure(.busy))
        // A second waiter for a peer already being looked up joins its lookup.
        let again = Task { await directory.user(peers[0]) }
        for _ in 0..<1000 where directory.waiting < 3 { try await Task.sleep(for: .milliseconds(5)) }
        #expect(directory.waiting == 3)
        database.answer()
        for task in [first, second, again] { #expect((try? await task.value.get()) != nil) }
        #expect(try await directory.user(peers[2]).get().uid == peers[2].uid)
        #expect(database.questions.count == 3)
    }

    @Test("answers are kept for their lifetime only, and at most capacity of them")
    func answersExpireAndAreBounded() async throws {
        let database = GatedUserDatabase()
        database.answer()
        let directory = UserDirectory(lifetime: .milliseconds(50), capacity: 3, lookup: database.lookup)
        for index in 0..<5 {
            _ = try await directory.user(.init(uid: 3_999_300 + uid_t(index), gid: 100)).get()
            #expect(directory.answersKept <= 3)
        }
        _ = try await directory.user(Self.peer).get()
        try await Task.sleep(for: .milliseconds(100))
        _ = try await directory.user(Self.peer).get()
        #expect(database.questions.filter { $0 == Self.peer }.count == 2, "an expired answer is asked for again")
    }

    @Test("a full cache gives up an unlisted user's answer before a listed one's, however old")
    func unlistedAnswersGoFirst() async throws {
        let database = GatedUserDatabase()
        database.answer()
        let directory = UserDirectory(capacity: 2, lookup: database.lookup)
        let listed = UserDirectory.Peer(uid: 500, gid: 100)
        _ = try await directory.user(listed).get()
        for index in 0..<4 { _ = try await directory.user(.init(uid: 3_999_500 + uid_t(index), gid: 100)).get() }
        #expect(directory.answersKept == 2)
        guard case .answered = directory.start(listed, waiter: { _ in }) else {
            Issue.record("the listed user's answer was given up for unlisted ones")
            return
        }
    }

    @Test("a failure of the database is passed on and not kept: the next caller asks again")
    func aFailedLookupIsNotKept() async {
        let asked = Atomic<Int>(0)
        let directory = UserDirectory { _ in
            asked.add(1, ordering: .relaxed)
            return .failure(.failed)
        }
        #expect(await directory.user(Self.peer) == .failure(.failed))
        #expect(await directory.user(Self.peer) == .failure(.failed))
        #expect(asked.load(ordering: .relaxed) == 2)
        #expect(directory.answersKept == 0)
    }

    @Test("the database's answer: a listed UID is its account with the peer's group; an unlisted one has no name")
    func theDatabaseAnswer() throws {
        let root = try UserDirectory.database(.init(uid: 0, gid: 0)).get()
        #expect(root.name == "root")
        #expect(root.resolvedGroups?.first == 0)
        try #require(UserIdentity.lookup(uid: Self.peer.uid) == nil, "the test's UID is unlisted")
        let unlisted = try UserDirectory.database(Self.peer).get()
        #expect(unlisted.name == nil && unlisted.gid == Self.peer.gid)
        #expect(unlisted.groups == [Self.peer.gid])
    }
}
