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

    init(capacity: Int, agingNanoseconds: UInt64) {
        self.capacity = max(capacity, 1)
        self.agingNanoseconds = agingNanoseconds
    }

    /// The port `address` was last seen on, unless that is older than the aging time.
    func port(of address: MACAddress, now: UInt64) -> SwitchPortID? {
        guard let entry = entries[address], now &- entry.lastSeen <= agingNanoseconds else { return nil }
        return entry.port
    }

    /// Records `address` on `port`. When full, aged entries go first, then the oldest.
    mutating func learn(_ address: MACAddress, on port: SwitchPortID, now: UInt64) {
        // Most frames come from an address already known: one lookup refreshes it in place.
        if let known = entries.index(forKey: address) {
            entries.values[known] = Entry(port: port, lastSeen: now)
            return
        }
        if entries.count >= capacity {
            entries = entries.filter { now &- $0.value.lastSeen <= agingNanoseconds }
            if entries.count >= capacity, let oldest = entries.min(by: { $0.value.lastSeen < $1.value.lastSeen }) {
                entries[oldest.key] = nil
            }
        }
        entries[address] = Entry(port: port, lastSeen: now)
    }

    /// Forgets every address learned on `port`.
    mutating func forget(port: SwitchPortID) {
        entries = entries.filter { $0.value.port != port }
    }

    var count: Int { entries.count }
}
