import Synchronization

/// Back ends the parent partition runs for all its children and devices may share (the virtual
/// switches a NIC plugs into), looked up by type. The parent registers each once; a device
/// finds it through `DeviceContext.sharedBackend(_:)`.
public final class SharedBackends: Sendable {
    private let table = Mutex<[ObjectIdentifier: any Sendable]>([:])

    public init() {}

    /// Registers `backend` as the one of its type.
    public func register<Backend: Sendable>(_ backend: Backend) {
        table.withLock { $0[ObjectIdentifier(Backend.self)] = backend }
    }

    /// The registered back end of type `type`, if any.
    public func lookup<Backend: Sendable>(_ type: Backend.Type) -> Backend? {
        table.withLock { $0[ObjectIdentifier(Backend.self)] } as? Backend
    }
}
