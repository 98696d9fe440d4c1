/// The receive buffer carved into equal sub-allocations, partitioned among the channels, with
/// the transfer-page packets in flight on each channel (Linux `netvsc_receive` reads one RNDIS
/// message per range; the guest's 8-byte completion frees every range of that packet).
///
/// Partitioning: with n channels, channel c owns sub-allocations [c·k, (c+1)·k) where
/// k = count / n (the last channel takes the remainder). A sub-allocation in flight when the
/// partition changes returns to its new owner when completed. Since every packet uses at least
/// one sub-allocation, a channel never has more packets in flight than sub-allocations (the
/// guest's completion queue holds exactly that many).
struct ReceiveBufferPool: Sendable {
    let subAllocationSize: Int
    let count: Int
    private(set) var channelCount = 1
    /// Free sub-allocations per channel (a stack: recently used ones are reused first).
    private var free: [[Int]]
    /// Sub-allocations of each packet in flight, per channel, by transaction ID.
    private var inFlight: [[UInt64: [Int]]]
    /// The next transaction ID per channel.
    private var nextTransactionID: [UInt64]

    init(subAllocationSize: Int, count: Int) {
        self.subAllocationSize = subAllocationSize
        self.count = count
        free = [Array((0..<count).reversed())]
        inFlight = [[:]]
        nextTransactionID = [1]
    }

    /// The channel that owns sub-allocation `index` under the current partition.
    func owner(of index: Int) -> Int {
        let share = max(count / channelCount, 1)
        return min(index / share, channelCount - 1)
    }

    /// Re-partitions among `channels` channels (≥ 1); the sub-allocations in flight stay in flight.
    mutating func partition(channels: Int) {
        let channels = max(1, min(channels, count))
        var busy = Set<Int>()
        for table in inFlight { for indices in table.values { busy.formUnion(indices) } }
        channelCount = channels
        free = Array(repeating: [], count: channels)
        for index in (0..<count).reversed() where !busy.contains(index) { free[owner(of: index)].append(index) }
        while inFlight.count < channels { inFlight.append([:]) }
        while nextTransactionID.count < channels { nextTransactionID.append(1) }
    }

    /// Free sub-allocations of `channel`.
    func available(on channel: Int) -> Int { channel < channelCount ? free[channel].count : 0 }

    /// Packets in flight on `channel`.
    func packetsInFlight(on channel: Int) -> Int { channel < inFlight.count ? inFlight[channel].count : 0 }

    /// Takes one free sub-allocation of `channel`, or `nil` if it has none.
    mutating func takeOne(on channel: Int) -> Int? {
        guard channel < channelCount else { return nil }
        return free[channel].popLast()
    }

    /// Gives back sub-allocations taken but never sent.
    mutating func giveBack(_ indices: [Int]) {
        for index in indices { free[owner(of: index)].append(index) }
    }

    /// Records a packet sent on `channel` with `indices`; returns its transaction ID (never 0
    /// nor one of the IDs netvsc reserves, U64_MAX−2 and U64_MAX−3).
    mutating func send(_ indices: [Int], on channel: Int) -> UInt64 {
        var id = nextTransactionID[channel]
        while id == 0 || id >= UInt64.max - 3 || inFlight[channel][id] != nil { id = id >= UInt64.max - 3 ? 1 : id + 1 }
        nextTransactionID[channel] = id + 1
        inFlight[channel][id] = indices
        return id
    }

    /// The guest completed packet `transactionID` on `channel`: its sub-allocations are free again.
    /// - Returns: `false` if no such packet is in flight on that channel.
    mutating func complete(_ transactionID: UInt64, on channel: Int) -> Bool {
        guard channel < inFlight.count, let indices = inFlight[channel].removeValue(forKey: transactionID) else {
            return false
        }
        for index in indices { free[owner(of: index)].append(index) }
        return true
    }

    /// Forgets the packets in flight on `channel` (the channel closed; its guest side is gone).
    mutating func abandon(channel: Int) {
        guard channel < inFlight.count else { return }
        let indices = inFlight[channel].values.flatMap { $0 }
        inFlight[channel] = [:]
        for index in indices { free[owner(of: index)].append(index) }
    }
}
