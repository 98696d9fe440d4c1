import Dispatch
import Glibc
import LinuxSupport
import Privilege
import Synchronization

/// Who the management API's peers are, as the user database says: a peer's account (if the
/// database lists its UID) and its groups. The database may answer slowly or not at all (an LDAP
/// server behind sssd), so it is never asked on the server's event loop or its concurrency
/// threads: each lookup runs on a thread of its own, at most `maximumLookups` at once, one per
/// peer however many wait for it; a caller waits at most `timeout`; and answers are kept for
/// `lifetime`, at most `capacity` of them, so a peer that comes again finds its answer at once.
final class UserDirectory: Sendable {
    /// A peer's user and group, as SO_PEERCRED gives them.
    struct Peer: Hashable, Sendable {
        var uid: uid_t
        var gid: gid_t
    }

    /// Why a peer could not be told.
    enum Failure: Error, Equatable {
        /// The database did not answer within `timeout`.
        case timedOut
        /// `maximumLookups` lookups of other peers are still running (or no thread could start).
        case busy
        /// The database failed (an error other than "no such user"): not kept, asked again next time.
        case failed
    }

    /// How a request to tell a peer went on.
    enum Start {
        /// The answer was kept: here it is.
        case answered(UserIdentity)
        /// A lookup runs; the waiter is called with its answer unless `cancel` takes it back first.
        case waiting(ticket: UInt64)
        /// No lookup was started for it (`Failure.busy`).
        case refused(Failure)
    }

    typealias Lookup = @Sendable (Peer) -> Result<UserIdentity, Failure>
    typealias Waiter = @Sendable (Result<UserIdentity, Failure>) -> Void

    let timeout: Duration
    let lifetime: Duration
    let capacity: Int
    let maximumLookups: Int
    private let lookup: Lookup
    private let state = Mutex(State())

    private struct State {
        var answers: [Peer: (user: UserIdentity, expires: UInt64)] = [:]
        /// The waiters of each running lookup, by ticket.
        var lookups: [Peer: [UInt64: Waiter]] = [:]
        var nextTicket: UInt64 = 0
    }

    init(timeout: Duration = .seconds(5), lifetime: Duration = .seconds(60), capacity: Int = 256, maximumLookups: Int = 4,
         lookup: @escaping Lookup = UserDirectory.database) {
        self.timeout = timeout
        self.lifetime = lifetime
        self.capacity = max(capacity, 1)
        self.maximumLookups = max(maximumLookups, 1)
        self.lookup = lookup
    }

    /// The user database's answer: the peer's account if it has one (with the peer's own group
    /// as its primary group, as the kernel gave it), and the groups that account's name and that
    /// group have. A UID it does not list is a user with no name and only that group.
    static func database(_ peer: Peer) -> Result<UserIdentity, Failure> {
        do throws(SystemError) {
            var user = try UserIdentity.find(uid: peer.uid) ?? UserIdentity(uid: peer.uid, gid: peer.gid)
            user.gid = peer.gid
            return .success(user.resolvingGroups())
        } catch {
            return .failure(.failed)
        }
    }

    /// `peer`'s user, waiting (without holding a thread) at most `timeout` for the database.
    func user(_ peer: Peer) async -> Result<UserIdentity, Failure> {
        await withCheckedContinuation { (continuation: CheckedContinuation<Result<UserIdentity, Failure>, Never>) in
            switch start(peer, waiter: { continuation.resume(returning: $0) }) {
            case .answered(let user):
                continuation.resume(returning: .success(user))
            case .refused(let failure):
                continuation.resume(returning: .failure(failure))
            case .waiting(let ticket):
                // The waiter is called, or taken back here, never both; a deadline that finds
                // it answered does nothing.
                Self.deadlines.asyncAfter(deadline: .now() + .nanoseconds(Int(MonotonicClock.nanoseconds(in: timeout)))) {
                    if self.cancel(peer, ticket: ticket) { continuation.resume(returning: .failure(.timedOut)) }
                }
            }
        }
    }

    /// Where waits end at their deadlines: a serial queue of its own, whose thread Dispatch
    /// starts when it has work, so a deadline is kept even while every concurrency thread is busy.
    private static let deadlines = DispatchQueue(label: "hv.user-directory.deadlines")

    /// `peer`'s user if it was answered within `lifetime`, or starts (or joins) a lookup whose
    /// answer goes to `waiter`, on the lookup's thread. The caller keeps the deadline: when it
    /// passes, `cancel` takes the waiter back.
    func start(_ peer: Peer, waiter: @escaping Waiter) -> Start {
        let now = MonotonicClock.nanoseconds()
        let (start, isNew) = state.withLock { state -> (Start, Bool) in
            if let answer = state.answers[peer] {
                if answer.expires > now { return (.answered(answer.user), false) }
                state.answers[peer] = nil
            }
            // A lookup whose waiters have all given up still runs, and is joined.
            let isNew = state.lookups[peer] == nil
            if isNew, state.lookups.count >= maximumLookups { return (.refused(.busy), false) }
            let ticket = state.nextTicket
            state.nextTicket &+= 1
            state.lookups[peer, default: [:]][ticket] = waiter
            return (.waiting(ticket: ticket), isNew)
        }
        guard isNew, case .waiting(let ticket) = start else { return start }
        do throws(SystemError) {
            try OSThread.spawn(name: "api-user") { [self] in
                finish(peer, lookup(peer))
            }.detach()
        } catch {
            // No lookup will answer those who joined meanwhile either.
            let waiters = state.withLock { $0.lookups.removeValue(forKey: peer) ?? [:] }
            for (other, waiter) in waiters where other != ticket { waiter(.failure(.busy)) }
            return .refused(.busy)
        }
        return start
    }

    /// Takes back the waiter `ticket` on `peer`'s lookup; whether it was still waiting (and so
    /// will never be called).
    func cancel(_ peer: Peer, ticket: UInt64) -> Bool {
        state.withLock { $0.lookups[peer]?.removeValue(forKey: ticket) != nil }
    }

    /// Keeps a lookup's answer (not a failure) and hands it to everyone still waiting for it.
    private func finish(_ peer: Peer, _ answer: Result<UserIdentity, Failure>) {
        let now = MonotonicClock.nanoseconds()
        let expires = now &+ MonotonicClock.nanoseconds(in: lifetime)
        let waiters = state.withLock { state in
            if case .success(let user) = answer {
                if state.answers.count >= capacity, state.answers[peer] == nil { makeRoom(in: &state, now: now) }
                state.answers[peer] = (user, expires)
            }
            return state.lookups.removeValue(forKey: peer) ?? [:]
        }
        for waiter in waiters.values { waiter(answer) }
    }

    /// Drops the expired answers, or else the oldest of a user the database does not list (so
    /// the many UIDs one user may run as cannot push out the answers for listed users), or else
    /// the oldest.
    private func makeRoom(in state: inout State, now: UInt64) {
        state.answers = state.answers.filter { $0.value.expires > now }
        guard state.answers.count >= capacity else { return }
        let unlisted = state.answers.filter { $0.value.user.name == nil }
        let candidates = unlisted.isEmpty ? state.answers : unlisted
        if let oldest = candidates.min(by: { $0.value.expires < $1.value.expires })?.key { state.answers[oldest] = nil }
    }

    /// Callers waiting for lookups now (for tests).
    var waiting: Int { state.withLock { $0.lookups.values.reduce(0) { $0 + $1.count } } }

    /// Answers kept now.
    var answersKept: Int { state.withLock { $0.answers.count } }
}
