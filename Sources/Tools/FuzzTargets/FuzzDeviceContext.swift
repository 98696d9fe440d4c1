import DeviceHost
import GuestMemory
import HyperV
import LinuxSupport
import Logging
import Synchronization
import VMBusHost

/// The partition a fuzzed device serves: real memfd-backed RAM, and a partition that records
/// nothing it does not have to (facts are counted, not kept, so a long run stays small).
final class FuzzDeviceContext: DeviceContext {
    let partitionName = "fuzz"
    let processorCount: UInt32 = 2
    let memory: GuestMemory
    let logger = Logger(label: "hv.fuzz") { _ in SwiftLogNoOpLogHandler() }
    private let state = Mutex(State())

    struct State {
        var factKeys = Set<String>()
        var eventConnections: [ConnectionID: EventFD] = [:]
        var interruptLine: EventFD?
    }

    init(memorySize: Int = 4 << 20) throws(SystemError) {
        memory = try GuestMemory.create(name: "hv-fuzz", size: memorySize)
    }

    func raise(vp: UInt32, sint: UInt8) {}

    func registerEventConnection(_ connection: ConnectionID, event: EventFD) {
        state.withLock { $0.eventConnections[connection] = event }
    }

    func unregisterEventConnection(_ connection: ConnectionID) {
        state.withLock { _ = $0.eventConnections.removeValue(forKey: connection) }
    }

    func report(_ facts: [String: String]) {
        state.withLock { $0.factKeys.formUnion(facts.keys) }
    }

    func referenceTime() -> UInt64 { MonotonicClock.nanoseconds() / 100 }

    func interceptPorts(_ ports: Range<UInt16>, accessesPerSecond: UInt32) {}

    func requestInterruptLine(pin: UInt8, completion: @escaping @Sendable (EventFD?) -> Void) {
        let line = state.withLock { state -> EventFD? in
            if state.interruptLine == nil { state.interruptLine = try? EventFD() }
            return state.interruptLine
        }
        completion(line)
    }

    func consoleOutput(_ bytes: [UInt8]) {}

    /// Forgets the fact keys reported so far (a new channel).
    func forgetFacts() {
        state.withLock { $0.factKeys.removeAll() }
    }

    /// How many distinct fact keys the device reported: a device whose keys the guest chooses
    /// must bound them.
    var distinctFactKeys: Int { state.withLock { $0.factKeys.count } }
    /// Event connections registered now (a device must unregister what it registered).
    var eventConnectionCount: Int { state.withLock { $0.eventConnections.count } }
}
