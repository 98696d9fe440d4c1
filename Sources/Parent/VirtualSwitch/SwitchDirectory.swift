import Synchronization

/// The virtual switches of one parent partition, by name: the parent adds and removes them as the
/// root configures them; synthetic NICs look theirs up when they are built.
public final class SwitchDirectory: Sendable {
    private let switches = Mutex<[String: VirtualSwitch]>([:])

    /// The most switches one parent runs.
    public static let maximumSwitches = 64

    public init() {}

    /// Adds `virtualSwitch` under its name, replacing a switch of that name (the root sent it
    /// again, after a parent restart or a change).
    /// - Returns: the switch it replaced, or `nil`; `false` in `added` if the directory is full.
    @discardableResult
    public func add(_ virtualSwitch: VirtualSwitch) -> (added: Bool, replaced: VirtualSwitch?) {
        switches.withLock { table in
            guard table[virtualSwitch.name] != nil || table.count < Self.maximumSwitches else { return (false, nil) }
            let replaced = table.updateValue(virtualSwitch, forKey: virtualSwitch.name)
            return (true, replaced)
        }
    }

    /// Removes the switch `name`; returns it.
    @discardableResult
    public func remove(_ name: String) -> VirtualSwitch? {
        switches.withLock { $0.removeValue(forKey: name) }
    }

    /// The switch `name`, if the root configured it.
    public func lookup(_ name: String) -> VirtualSwitch? {
        switches.withLock { $0[name] }
    }

    /// Every switch, by name.
    public var all: [VirtualSwitch] {
        switches.withLock { table in table.keys.sorted().compactMap { table[$0] } }
    }
}
