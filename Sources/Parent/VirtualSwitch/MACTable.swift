import NetworkProtocol

/// Learned MAC address → port entries with aging and a fixed capacity (IEEE 802.1Q §8.8
/// filtering database, simplified). Time is passed in (nanoseconds, monotonic), so aging is
/// tested without waiting.
struct MACTable: Sendable {
    struct Entry: Sendable {
        var port: SwitchPortID
        var lastSeen: UInt64
    }

    let capacity: Int
    let agingNanoseconds: UInt64
    private(set) var entries: [MACAddress: Entry] = [:]
    /// The entry last learned or looked up, as `entries` holds it: a stream of frames between
    /// two ports meets the same addresses frame after frame, and finds them here without
    /// hashing. Every change to `entries` keeps it equal to its entry or clears it.
    private var recent: (address: MACAddress, entry: Entry)?
    /// A refresh of an address learned on the same port is written to `entries` only when its
    /// time there is older than this (1/256 of the aging time: about 1.2 s of the default
    /// 300 s), so an entry ages out at most that much early.
    let refreshNanoseconds: UInt64

    init(capacity: Int, agingNanoseconds: UInt64) {
        self.capacity = max(capacity, 1)
        self.agingNanoseconds = agingNanoseconds
        refreshNanoseconds = agingNanoseconds / 256
    }

    /// The port `address` was last seen on, unless that is older than the aging time, without
    /// remembering the lookup.
    func peekPort(of address: MACAddress, now: UInt64) -> SwitchPortID? {
        let entry = recent.flatMap { $0.address == address ? $0.entry : nil } ?? entries[address]
        guard let entry, now &- entry.lastSeen <= agingNanoseconds else { return nil }
        return entry.port
    }

    /// The port `address` was last seen on, unless that is older than the aging time.
    mutating func port(of address: MACAddress, now: UInt64) -> SwitchPortID? {
        let entry: Entry
        if let recent, recent.address == address {
            entry = recent.entry
        } else {
            guard let found = entries[address] else { return nil }
            entry = found
            recent = (address, found)
        }
        return now &- entry.lastSeen <= agingNanoseconds ? entry.port : nil
    }

    /// Records `address` on `port`. When full, aged entries go first, then the oldest.
    mutating func learn(_ address: MACAddress, on port: SwitchPortID, now: UInt64) {
        // The address of the last frame, on the same port, seen again soon: nothing to write
        // (its time in the table is at most `refreshNanoseconds` old).
        if let recent, recent.address == address, recent.entry.port == port,
           now &- recent.entry.lastSeen < refreshNanoseconds {
            return
        }
        let entry = Entry(port: port, lastSeen: now)
        recent = (address, entry)
        // Most frames come from an address already known: one lookup refreshes it in place.
        if let known = entries.index(forKey: address) {
            entries.values[known] = entry
            return
        }
        if entries.count >= capacity {
            entries = entries.filter { now &- $0.value.lastSeen <= agingNanoseconds }
            if entries.count >= capacity, let oldest = entries.min(by: { $0.value.lastSeen < $1.value.lastSeen }) {
                entries[oldest.key] = nil
            }
        }
        entries[address] = entry
    }

    /// Forgets every address learned on `port`.
    mutating func forget(port: SwitchPortID) {
        entries = entries.filter { $0.value.port != port }
        recent = nil
    }

    var count: Int { entries.count }
}
