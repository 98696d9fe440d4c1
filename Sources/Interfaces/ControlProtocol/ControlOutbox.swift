import LinuxSupport

/// The sending half of one control connection: bounded queues ("lanes", one per child
/// partition, plus a priority lane for the connection's own business) drained by one thread that
/// takes the lanes in turn and never blocks on the socket for longer than `stallNanoseconds`.
///
/// Whoever has something to send only queues it (no socket I/O, so it may hold its own locks),
/// and one child that floods fills only its own lane: it is refused or throttled while the
/// others' messages keep going out, one lane after the other. A lane can also be given a
/// *window*: entries marked as jobs (work that runs on the peer's per-child thread) stop going
/// out once `window` of them are unacknowledged, so the peer's per-child queue never overflows
/// and its reader never has to block or drop.
///
/// A peer that takes nothing for `stallNanoseconds`, a send that fails, or a lane pushed past
/// its hard limit (`Admission.always`) ends the connection:
/// `onFailure` runs once (the owner shuts the socket down) and every later enqueue is refused.
///
/// A producer that holds no lock may `help`: when no one is sending, it sends the next entry
/// (in the same turn order) itself, without blocking, sparing the wake-up of the sending thread
/// on a quiet link; whatever the socket does not take at once stays for the sending thread.
public final class ControlOutbox: Sendable {
    /// One datagram and the descriptors that travel with it (kept open until it is sent).
    public struct Datagram: Sendable {
        public var bytes: [UInt8]
        public var descriptors: [OwnedDescriptor]

        public init(_ bytes: [UInt8], descriptors: [OwnedDescriptor] = []) {
            self.bytes = bytes
            self.descriptors = descriptors
        }
    }

    /// What an entry sends.
    public enum Payload: Sendable {
        case ready(Datagram)
        /// Built when it is the entry's turn, so it reflects the state of that moment (a
        /// partition's attachment); may be several datagrams, sent back to back.
        case deferred(@Sendable () -> [Datagram])
    }

    /// What to do when a lane is full.
    public enum Admission: Sendable, Equatable {
        /// Queue it anyway: for entries bounded by their nature (answers to the peer's own
        /// requests, entries that replace an earlier one of their key). Still, a lane that
        /// reaches `Limits.hardLimitFactor` times its limits this way ends the connection: the
        /// peer is making this side keep more than anything it sends may need.
        case always
        /// Refuse it.
        case ifRoom
        /// Wait up to this long for room, then refuse it (throttles the producer, and only it).
        case waiting(nanoseconds: UInt64)
    }

    public struct Limits: Sendable {
        /// How many times its limits a lane may hold through `Admission.always`.
        public static let hardLimitFactor = 4

        /// The most entries one lane holds.
        public var laneEntries: Int
        /// The most bytes one lane holds (deferred entries count as none).
        public var laneBytes: Int
        /// The most unacknowledged jobs of one lane.
        public var window: UInt64
        /// The most entries the priority lane holds (beyond them, the peer is not reading its
        /// answers: the connection fails).
        public var priorityEntries: Int
        /// How long the socket may stay full before the peer is given up.
        public var stallNanoseconds: UInt64

        public init(laneEntries: Int = 1024, laneBytes: Int = 2 << 20, window: UInt64 = 256, priorityEntries: Int = 4096,
                    stallNanoseconds: UInt64 = 30_000_000_000) {
            self.laneEntries = laneEntries
            self.laneBytes = laneBytes
            self.window = window
            self.priorityEntries = priorityEntries
            self.stallNanoseconds = stallNanoseconds
        }
    }

    struct Entry: Sendable {
        var payload: Payload
        var isJob: Bool
        var key: UInt64?
        var size: Int
        /// Its lane (nil: the priority lane).
        var lane: UInt32?

        var isReady: Bool {
            if case .ready = payload { return true }
            return false
        }
    }

    struct Lane: Sendable {
        var entries: [Entry] = []
        var head = 0
        var bytes = 0
        var sentJobs: UInt64 = 0
        var acknowledgedJobs: UInt64 = 0

        var count: Int { entries.count - head }
        var outstanding: UInt64 { sentJobs > acknowledgedJobs ? sentJobs - acknowledgedJobs : 0 }

        func hasRoom(_ limits: Limits, adding size: Int) -> Bool {
            count < limits.laneEntries && bytes + size <= limits.laneBytes
        }

        /// Whether an entry admitted `.always` to a partition's lane stays within the hard limit.
        func belowHardLimit(_ limits: Limits, adding size: Int) -> Bool {
            count < limits.laneEntries * Limits.hardLimitFactor && bytes + size <= limits.laneBytes * Limits.hardLimitFactor
        }

        func canSend(_ limits: Limits, readyOnly: Bool = false) -> Bool {
            guard head < entries.count else { return false }
            if readyOnly && !entries[head].isReady { return false }
            return !entries[head].isJob || outstanding < limits.window
        }

        /// Puts back an entry taken from the front that could not be sent.
        mutating func putBack(_ entry: Entry) {
            if head > 0 {
                head -= 1
                entries[head] = entry
            } else {
                entries.insert(entry, at: 0)
            }
            bytes += entry.size
            // A lane closed and opened again while the entry was out starts from zero.
            if entry.isJob, sentJobs > 0 { sentJobs -= 1 }
        }

        mutating func append(_ entry: Entry) {
            if let key = entry.key, let index = entries[head...].firstIndex(where: { $0.key == key }) {
                bytes -= entries[index].size
                entries.remove(at: index)
            }
            entries.append(entry)
            bytes += entry.size
        }

        mutating func pop() -> Entry {
            let entry = entries[head]
            head += 1
            bytes -= entry.size
            if entry.isJob { sentJobs += 1 }
            if head == entries.count {
                entries.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 64 && head * 2 >= entries.count {
                entries.removeFirst(head)
                head = 0
            }
            return entry
        }
    }

    struct State: Sendable {
        var priority = Lane()
        var lanes: [UInt32: Lane] = [:]
        /// Lane IDs in the order they are served; `cursor` is where the next turn starts.
        var order: [UInt32] = []
        var cursor = 0
        var stopping = false
        var failed = false
        /// Someone (the sending thread or a helping producer) is writing to the socket.
        var sending = false

        func sendable(_ limits: Limits) -> Bool {
            priority.count > 0 || lanes.values.contains { $0.canSend(limits) }
        }

        /// The next entry to send: the priority lane's first, else the next lane in turn that may
        /// send (`readyOnly`: only an entry that needs no building).
        mutating func take(_ limits: Limits, readyOnly: Bool = false) -> Entry? {
            if priority.count > 0 {
                return !readyOnly || priority.canSend(limits, readyOnly: true) ? priority.pop() : nil
            }
            guard !order.isEmpty else { return nil }
            for step in 0..<order.count {
                let index = (cursor + step) % order.count
                let id = order[index]
                guard lanes[id]?.canSend(limits, readyOnly: readyOnly) == true else { continue }
                cursor = (index + 1) % order.count
                return lanes[id]?.pop()
            }
            return nil
        }

        /// Puts back an entry a helper could not send.
        mutating func putBack(_ entry: Entry) {
            if let lane = entry.lane {
                lanes[lane]?.putBack(entry)
            } else {
                priority.putBack(entry)
            }
        }
    }

    private let socket: SequencedPacketSocket
    private let state = ConditionLock(State())
    private let thread = ConditionLock<OSThread?>(nil)
    private let failureHandler = ConditionLock<(@Sendable (SystemError) -> Void)?>(nil)
    public let limits: Limits

    public init(socket: SequencedPacketSocket, limits: Limits = Limits()) {
        self.socket = socket
        self.limits = limits
    }

    /// Starts the sending thread. `onFailure` runs once: on that thread when the peer stalls
    /// past `stallNanoseconds` or a send fails, on the enqueuing thread when an entry admitted
    /// `.always` would pass a lane's hard limit (`Admission.always`).
    public func start(name: String, onFailure: @escaping @Sendable (SystemError) -> Void) throws(SystemError) {
        failureHandler.update { $0 = onFailure }
        let started = try OSThread.spawn(name: name) { [self] in run(onFailure) }
        thread.update { $0 = started }
    }

    /// Stops the sending thread and waits for it; what is still queued is dropped (entries may
    /// hold their producers, which would otherwise outlive the connection).
    public func stop() {
        state.update { $0.stopping = true }
        let running = thread.update { value -> OSThread? in
            defer { value = nil }
            return value
        }
        running?.join()
        state.update { state in
            state.priority = Lane()
            for id in state.lanes.keys { state.lanes[id] = Lane() }
        }
    }

    /// Whether the connection failed (nothing more is sent).
    public var hasFailed: Bool { state.read { $0.failed } }

    // MARK: Lanes

    /// Opens lane `id` (idempotent); it is served after the lanes opened before it.
    public func openLane(_ id: UInt32) {
        state.update { state in
            guard state.lanes[id] == nil else { return }
            state.lanes[id] = Lane()
            state.order.append(id)
        }
    }

    /// Closes lane `id`, dropping what it holds.
    public func closeLane(_ id: UInt32) {
        state.update { state in
            guard state.lanes.removeValue(forKey: id) != nil, let index = state.order.firstIndex(of: id) else { return }
            state.order.remove(at: index)
            if state.cursor > index { state.cursor -= 1 }
            if state.cursor >= state.order.count { state.cursor = 0 }
        }
    }

    /// The peer has completed `jobs` of lane `id`'s jobs in all (cumulative): up to `window`
    /// more may go out.
    public func acknowledge(lane id: UInt32, jobs: UInt64) {
        state.update { state in
            guard var lane = state.lanes[id] else { return }
            lane.acknowledgedJobs = max(lane.acknowledgedJobs, jobs)
            state.lanes[id] = lane
        }
    }

    /// Entries waiting in lane `id` (nil: no such lane).
    public func queued(lane id: UInt32) -> Int? { state.read { $0.lanes[id]?.count } }

    /// Whether lane `id` is below its limits, in entries and in bytes (nil: no such lane).
    public func hasRoom(lane id: UInt32) -> Bool? {
        let limits = limits
        return state.read { $0.lanes[id]?.hasRoom(limits, adding: 0) }
    }

    /// Jobs of lane `id` sent and not yet acknowledged.
    public func outstandingJobs(lane id: UInt32) -> UInt64 { state.read { $0.lanes[id]?.outstanding ?? 0 } }

    // MARK: Sending

    /// Queues `payload` on lane `lane` (nil: the priority lane, which is served first).
    /// - Parameters:
    ///   - isJob: counts against the lane's window.
    ///   - key: an unsent entry of the lane with the same key is dropped, and this one queued at
    ///     the end (so it still follows everything queued before it).
    /// - Returns: whether it was queued (not when refused, the lane is closed, or the connection
    ///   failed or stopped).
    @discardableResult
    public func enqueue(_ payload: Payload, lane: UInt32?, isJob: Bool = false, replacing key: UInt64? = nil,
                        admission: Admission) -> Bool {
        var size = 0
        if case .ready(let datagram) = payload { size = datagram.bytes.count }
        let entry = Entry(payload: payload, isJob: isJob, key: key, size: size, lane: lane)
        let limits = limits
        var overflowed = false
        func admit(_ state: inout State) -> Bool? {
            guard !state.stopping, !state.failed else { return false }
            guard let lane else {
                guard state.priority.count < limits.priorityEntries || admission == .always else { return false }
                // The priority lane is bounded in entries only (answers are small).
                guard state.priority.count < limits.priorityEntries * Limits.hardLimitFactor else {
                    state.failed = true
                    overflowed = true
                    return false
                }
                state.priority.append(entry)
                return true
            }
            guard var current = state.lanes[lane] else { return false }
            let replaces = key.map { key in current.entries[current.head...].contains { $0.key == key } } ?? false
            guard admission == .always || replaces || current.hasRoom(limits, adding: size) else { return nil }
            guard replaces || current.belowHardLimit(limits, adding: size) else {
                state.failed = true
                overflowed = true
                return false
            }
            current.append(entry)
            state.lanes[lane] = current
            return true
        }
        let queued: Bool
        if case .waiting(let nanoseconds) = admission {
            let outcome = state.wait(until: { state in
                state.stopping || state.failed || lane.map { state.lanes[$0]?.hasRoom(limits, adding: size) ?? true } ?? true
            }, timeoutNanoseconds: nanoseconds) { admit(&$0) }
            queued = (outcome ?? nil) ?? false
        } else {
            queued = state.update { admit(&$0) } ?? false
        }
        if overflowed, let handler = failureHandler.read({ $0 }) {
            handler(SystemError("queue more than \(Limits.hardLimitFactor) times a lane's limits for the peer",
                                errno: .noBufferSpace))
        }
        return queued
    }

    /// Queues one ready datagram (see `enqueue(_:lane:isJob:replacing:admission:)`).
    @discardableResult
    public func enqueue(_ bytes: [UInt8], descriptors: [OwnedDescriptor] = [], lane: UInt32?, isJob: Bool = false,
                        replacing key: UInt64? = nil, admission: Admission) -> Bool {
        enqueue(.ready(Datagram(bytes, descriptors: descriptors)), lane: lane, isJob: isJob, replacing: key,
                admission: admission)
    }

    /// When no one is sending, sends the next entry in turn on the calling thread, without
    /// blocking; an entry the socket does not take at once goes back for the sending thread.
    /// Call it right after `enqueue`, holding no lock.
    public func help() {
        let limits = limits
        let taken = state.update { state -> Entry? in
            guard !state.stopping, !state.failed, !state.sending, let entry = state.take(limits, readyOnly: true) else {
                return nil
            }
            state.sending = true
            return entry
        }
        guard let taken, case .ready(let datagram) = taken.payload else { return }
        var failure: SystemError?
        do throws(SystemError) {
            try withExtendedLifetime(datagram.descriptors) { () throws(SystemError) in
                try socket.send(datagram.bytes, descriptors: datagram.descriptors.map(\.rawValue), nonBlocking: true)
            }
        } catch where error.errno == .resourceTemporarilyUnavailable {
            // Once `stop()` began, the lanes are being emptied: the entry goes with them.
            state.update { state in if !state.stopping { state.putBack(taken) } }
        } catch {
            failure = error
        }
        let first = state.update { state -> Bool in
            state.sending = false
            guard failure != nil else { return false }
            defer { state.failed = true }
            return !state.failed
        }
        if first, let failure, let handler = failureHandler.read({ $0 }) { handler(failure) }
    }

    private enum Turn {
        case stop, idle, send(Entry)
    }

    private func run(_ onFailure: @Sendable (SystemError) -> Void) {
        let limits = limits
        while true {
            let turn = state.wait(until: { $0.stopping || $0.failed || (!$0.sending && $0.sendable(limits)) },
                                  timeoutNanoseconds: 1_000_000_000) { state -> Turn in
                guard !state.stopping, !state.failed else { return .stop }
                guard !state.sending, let entry = state.take(limits) else { return .idle }
                state.sending = true
                return .send(entry)
            }
            let entry: Entry
            switch turn ?? .idle {  // nil: the idle wait's deadline passed; look again
            case .stop: return
            case .idle: continue
            case .send(let next): entry = next
            }
            let datagrams: [Datagram]
            switch entry.payload {
            case .ready(let datagram): datagrams = [datagram]
            case .deferred(let build): datagrams = build()
            }
            for datagram in datagrams {
                do throws(SystemError) {
                    try send(datagram)
                } catch {
                    let first = state.update { state -> Bool in
                        state.sending = false
                        defer { state.failed = true }
                        return !state.failed
                    }
                    if first { onFailure(error) }
                    return
                }
            }
            state.update { $0.sending = false }
        }
    }

    /// Sends without blocking, waiting for room in the socket at most `stallNanoseconds` in all.
    private func send(_ datagram: Datagram) throws(SystemError) {
        let deadline = MonotonicClock.nanoseconds() &+ limits.stallNanoseconds
        while true {
            do throws(SystemError) {
                try withExtendedLifetime(datagram.descriptors) { () throws(SystemError) in
                    try socket.send(datagram.bytes, descriptors: datagram.descriptors.map(\.rawValue), nonBlocking: true)
                }
                return
            } catch where error.errno == .resourceTemporarilyUnavailable {
                let now = MonotonicClock.nanoseconds()
                if state.read({ $0.stopping }) { return }  // dropped: the connection is going away
                guard now < deadline else {
                    throw SystemError("send to a peer that has taken nothing for \(limits.stallNanoseconds / 1_000_000) ms",
                                      errno: .timedOut)
                }
                // Wake now and then to notice `stop()`.
                let wait = Int32(clamping: min((deadline - now) / 1_000_000 + 1, 200))
                _ = try Poll.waitWritable(socket.owned.rawValue, timeoutMilliseconds: wait)
            }
        }
    }
}
