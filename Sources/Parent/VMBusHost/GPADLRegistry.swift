import LinuxSupport
import VMBusProtocol

/// A complete GPADL as devices see it: the guest pages behind one buffer of a channel.
public struct GuestBufferGPADL: Hashable, Sendable {
    /// The guest's handle.
    public var handle: UInt32
    /// The channel (child relid) the guest created it for.
    public var channel: UInt32
    /// Offset of the buffer into its first page.
    public var byteOffset: UInt32
    /// Length of the buffer in bytes.
    public var byteCount: UInt32
    /// The guest page frame numbers, in buffer order.
    public var pageNumbers: [UInt64]
    /// Distinguishes this GPADL from an earlier one with the same handle (a guest may reuse
    /// handles after a teardown): a lease names the serial it was looked up with.
    public var serial: UInt64

    public init(handle: UInt32, channel: UInt32, byteOffset: UInt32, byteCount: UInt32, pageNumbers: [UInt64],
                serial: UInt64) {
        self.handle = handle
        self.channel = channel
        self.byteOffset = byteOffset
        self.byteCount = byteCount
        self.pageNumbers = pageNumbers
        self.serial = serial
    }
}

/// The GPADLs of one partition that devices may use beside their rings (a NIC's receive and send
/// buffers), with leases that make teardown safe.
///
/// The VMBus service publishes each GPADL when the server completes it and revokes it when the
/// guest tears it down. A device touches a GPADL's pages only while it holds a lease on it
/// (`GPADLView.withLeases`), for the length of one bounded access (a batch of copies). Revoking
/// refuses new leases at once and then waits, with a deadline, for the holders to leave, so the
/// server's GPADL_TORNDOWN — after which the guest may reuse the pages — is posted only once no
/// device touches them (Docs/vmbus.md, "GPADLs beyond the rings").
///
/// Bounded: at most `maximumEntries` GPADLs (the server allows no more), and a device sees only
/// the GPADLs of its own primary channel (`view(channel:)`).
public final class GPADLRegistry: Sendable {
    struct Entry: Sendable {
        var gpadl: GuestBufferGPADL
        var holders = 0
        var revoked = false
    }

    struct State: Sendable {
        var entries: [UInt32: Entry] = [:]
        var nextSerial: UInt64 = 1
    }

    private let state = ConditionLock(State())

    /// The most GPADLs tracked (the VMBus server's own limit).
    public static let maximumEntries = 1024
    /// How long a revoke waits for holders before it gives up on them by default (5 s).
    public static let defaultRevokeTimeout: UInt64 = 5_000_000_000

    public init() {}

    /// A GPADL is complete: devices of `channel` may lease it. A handle still registered (the
    /// server never completes a handle twice without a teardown between) is replaced.
    /// - Returns: `false` if the table is full.
    @discardableResult
    public func publish(handle: UInt32, channel: UInt32, byteOffset: UInt32, byteCount: UInt32,
                        pageNumbers: [UInt64]) -> Bool {
        state.update { state in
            guard state.entries[handle] != nil || state.entries.count < Self.maximumEntries else { return false }
            let serial = state.nextSerial
            state.nextSerial += 1
            state.entries[handle] = Entry(gpadl: GuestBufferGPADL(
                handle: handle, channel: channel, byteOffset: byteOffset, byteCount: byteCount, pageNumbers: pageNumbers,
                serial: serial))
            return true
        }
    }

    /// The guest tore GPADL `handle` down: no new lease is granted, and this waits up to
    /// `timeoutNanoseconds` for the leases held to be returned.
    /// - Returns: `true` if nothing holds the GPADL any more (or it was never published);
    ///   `false` if a holder was still inside its access at the deadline.
    @discardableResult
    public func revoke(handle: UInt32, timeoutNanoseconds: UInt64 = GPADLRegistry.defaultRevokeTimeout) -> Bool {
        let known = state.update { state -> Bool in
            guard state.entries[handle] != nil else { return false }
            state.entries[handle]?.revoked = true
            return true
        }
        guard known else { return true }
        let drained: Bool? = state.wait(until: { ($0.entries[handle]?.holders ?? 0) == 0 },
                                        timeoutNanoseconds: timeoutNanoseconds) { state in
            state.entries[handle] = nil
            return true
        }
        if drained == nil {
            // Forget it anyway: the late holder's release finds no entry and does nothing.
            state.update { _ = $0.entries.removeValue(forKey: handle) }
            return false
        }
        return true
    }

    /// Forgets every GPADL (the guest disconnected; the server released them all).
    public func revokeAll(timeoutNanoseconds: UInt64 = GPADLRegistry.defaultRevokeTimeout) {
        let handles = state.read { Array($0.entries.keys) }
        for handle in handles.sorted() { revoke(handle: handle, timeoutNanoseconds: timeoutNanoseconds) }
    }

    /// The GPADLs devices of `channel` may use.
    public func view(channel: UInt32) -> GPADLView { GPADLView(registry: self, channel: channel) }

    /// GPADLs registered now (for tests and diagnostics).
    public var count: Int { state.read { $0.entries.count } }

    // MARK: For views

    func lookup(_ handle: UInt32, channel: UInt32) -> GuestBufferGPADL? {
        state.read { state in
            guard let entry = state.entries[handle], !entry.revoked, entry.gpadl.channel == channel else { return nil }
            return entry.gpadl
        }
    }

    func overlapsOthers(_ handle: UInt32) -> Bool {
        state.read { state in
            guard let mine = state.entries[handle] else { return false }
            let pages = Set(mine.gpadl.pageNumbers)
            return state.entries.contains { key, entry in
                key != handle && entry.gpadl.pageNumbers.contains { pages.contains($0) }
            }
        }
    }

    /// Takes a lease on each wanted GPADL that is still live under the same serial.
    func acquire(_ wanted: [GPADLLeaseRequest], channel: UInt32) -> [GPADLLeaseRequest] {
        state.update { state in
            var granted: [GPADLLeaseRequest] = []
            for request in wanted {
                guard var entry = state.entries[request.handle], !entry.revoked, entry.gpadl.serial == request.serial,
                      entry.gpadl.channel == channel else { continue }
                entry.holders += 1
                state.entries[request.handle] = entry
                granted.append(request)
            }
            return granted
        }
    }

    /// Takes a lease on every wanted GPADL if all are still live under the same serial, and on
    /// none otherwise.
    func acquireAll(_ wanted: [GPADLLeaseRequest], channel: UInt32) -> Bool {
        state.update { state in
            for request in wanted {
                guard let entry = state.entries[request.handle], !entry.revoked, entry.gpadl.serial == request.serial,
                      entry.gpadl.channel == channel else { return false }
            }
            for request in wanted { state.entries[request.handle]?.holders += 1 }
            return true
        }
    }

    func release(_ leases: [GPADLLeaseRequest]) {
        guard !leases.isEmpty else { return }
        state.update { state in
            // A lease outlived by a forced revoke finds no entry, or a newer one: nothing to do.
            for lease in leases where state.entries[lease.handle]?.gpadl.serial == lease.serial {
                state.entries[lease.handle]?.holders -= 1
            }
        }
    }
}

/// A GPADL a device wants to use: its handle and the serial it was looked up with.
public struct GPADLLeaseRequest: Hashable, Sendable {
    public var handle: UInt32
    public var serial: UInt64
    public init(handle: UInt32, serial: UInt64) {
        self.handle = handle
        self.serial = serial
    }
}

/// One channel's bounded view of its partition's GPADLs: those the guest created for that
/// channel (a sub-channel's device uses its primary channel's view).
public struct GPADLView: Sendable {
    let registry: GPADLRegistry
    /// The channel (child relid) whose GPADLs this view shows.
    public let channel: UInt32

    /// The live GPADL `handle` of this channel, if there is one.
    public func gpadl(_ handle: UInt32) -> GuestBufferGPADL? { registry.lookup(handle, channel: channel) }

    /// Whether GPADL `handle` shares a page with another GPADL of the partition (a ring, another
    /// buffer): a device refuses such a buffer rather than write over the other.
    public func overlapsOthers(_ handle: UInt32) -> Bool { registry.overlapsOthers(handle) }

    /// Takes a lease on each GPADL of `wanted` that is still live (same handle, same serial);
    /// returns those taken. Give every one back with `release` once the access is over, soon and
    /// on every path: a teardown of the GPADL waits for it. `withLeases` does both.
    public func acquire(_ wanted: [GPADLLeaseRequest]) -> [GPADLLeaseRequest] {
        wanted.isEmpty ? [] : registry.acquire(wanted, channel: channel)
    }

    /// Takes a lease on every GPADL of `wanted` if all are still live, and on none otherwise: a
    /// caller whose buffers are all in place leases them without building a list of those taken.
    /// - Returns: whether the leases were taken (give them back with `release(wanted)`).
    public func acquireAll(_ wanted: [GPADLLeaseRequest]) -> Bool {
        wanted.isEmpty || registry.acquireAll(wanted, channel: channel)
    }

    /// Returns leases `acquire` or `acquireAll` granted.
    public func release(_ leases: [GPADLLeaseRequest]) {
        registry.release(leases)
    }

    /// Runs `body` holding a lease on each GPADL of `wanted` that is still live; `body` learns
    /// which handles it holds and must touch no page of the others (they were torn down).
    /// Keep `body` short and free of waits: a teardown waits for it.
    public func withLeases<T>(_ wanted: [GPADLLeaseRequest], _ body: (_ held: [UInt32]) throws -> T) rethrows -> T {
        let held = wanted.isEmpty ? [] : registry.acquire(wanted, channel: channel)
        defer { registry.release(held) }
        return try body(held.map(\.handle))
    }
}
