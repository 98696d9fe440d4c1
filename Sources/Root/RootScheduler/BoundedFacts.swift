/// The facts the parent reports about a partition (`hv partition show`'s status), bounded: the
/// parent, and through some devices the guest (the bench names its facts after the sizes the
/// guest picks), chooses the keys, so the table must not grow with them. Past `capacity` keys,
/// new keys are dropped (known keys still update); keys and values are cut to their limits.
struct BoundedFacts {
    /// The most facts kept per partition.
    static let capacity = 512
    /// The longest key and value kept, in UTF-8 bytes.
    static let keyLimit = 128
    static let valueLimit = 1024

    private(set) var facts: [String: String] = [:]
    /// Facts dropped since the partition was created.
    private(set) var dropped = 0

    /// Merges `new`; returns how many of its keys were dropped because the table is full.
    @discardableResult
    mutating func merge(_ new: [String: String]) -> Int {
        var droppedNow = 0
        for (key, value) in new.sorted(by: { $0.key < $1.key }) {
            let key = Self.truncated(key, to: Self.keyLimit)
            guard facts[key] != nil || facts.count < Self.capacity else {
                droppedNow += 1
                continue
            }
            facts[key] = Self.truncated(value, to: Self.valueLimit)
        }
        dropped += droppedNow
        return droppedNow
    }

    private static func truncated(_ text: String, to limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        return String(decoding: text.utf8.prefix(limit), as: UTF8.self)
    }
}
