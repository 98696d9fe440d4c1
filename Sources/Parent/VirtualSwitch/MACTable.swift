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
    /// The entry last learned (a frame's source) and the one last looked up (a frame's
    /// destination), as `entries` holds them: a stream of frames between two ports meets the
    /// same two addresses frame after frame, and finds them here without hashing. Every change
    /// to `entries` keeps each equal to its entry or clears it.
    private var learned: (address: MACAddress, entry: Entry)?
    private var found: (address: MACAddress, entry: Entry)?
    /// The address last looked up and not in `entries`: a stream to a destination no port has
    /// announced (flooded) finds it here without hashing. Only `learn` adds to `entries`, and
    /// it clears this when it adds the address.
    private var missed: MACAddress?
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
        guard missed != address, let entry = remembered(address) ?? entries[address],
              now &- entry.lastSeen <= agingNanoseconds else { return nil }
        return entry.port
    }

    /// The port `address` was last seen on, unless that is older than the aging time.
    mutating func port(of address: MACAddress, now: UInt64) -> SwitchPortID? {
        if missed != address, remembered(address) == nil {
            guard let stored = entries[address] else {
                missed = address
                return nil
            }
            found = (address, stored)
        }
        return peekPort(of: address, now: now)
    }

    /// The entry of `address` if it is one of the two remembered.
    private func remembered(_ address: MACAddress) -> Entry? {
        if let found, found.address == address { return found.entry }
        if let learned, learned.address == address { return learned.entry }
        return nil
    }

    /// Records `address` on `port`. When full, aged entries go first, then the oldest, down to
    /// seven eighths of the capacity.
    mutating func learn(_ address: MACAddress, on port: SwitchPortID, now: UInt64) {
        // The source of the last frame, on the same port, seen again soon: nothing to write (its
        // time in the table is at most `refreshNanoseconds` old).
        if let learned, learned.address == address, learned.entry.port == port,
           now &- learned.entry.lastSeen < refreshNanoseconds {
            return
        }
        let entry = Entry(port: port, lastSeen: now)
        learned = (address, entry)
        if missed == address { missed = nil }
        if found?.address == address { found = (address, entry) }
        // Most frames come from an address already known: one lookup refreshes it in place.
        if let known = entries.index(forKey: address) {
            entries.values[known] = entry
            return
        }
        if entries.count >= capacity {
            // Aged entries go first; if that is not enough, the oldest eighth at once, so a port
            // sending from ever new addresses (a LAN behind an uplink) costs one pass over the
            // table for every eighth of it learned, not one for every address, under the
            // switch's lock.
            entries = entries.filter { now &- $0.value.lastSeen <= agingNanoseconds }
            let kept = capacity - max(1, capacity / 8)
            if entries.count > kept {
                for (address, _) in entries.sorted(by: { $0.value.lastSeen < $1.value.lastSeen }).prefix(entries.count - kept) {
                    entries[address] = nil
                }
            }
            // The remembered destination may be gone (`learned` is the address being added).
            found = nil
        }
        entries[address] = entry
    }

    /// Forgets `address`, wherever it was learned.
    mutating func forget(address: MACAddress) {
        entries[address] = nil
        if learned?.address == address { learned = nil }
        if found?.address == address { found = nil }
    }

    /// Forgets every address learned on `port`.
    mutating func forget(port: SwitchPortID) {
        entries = entries.filter { $0.value.port != port }
        learned = nil
        found = nil
    }

    var count: Int { entries.count }
}
