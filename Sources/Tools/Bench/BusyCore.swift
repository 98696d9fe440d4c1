import LinuxSupport
import Synchronization

/// A host thread that keeps a processor busy while `body` runs: the load a guest's polling
/// processor puts on the host, without a guest. `hv bench storage` runs fio beside it at the
/// O_DIRECT points, where the development machine's virtual disk serves fewer requests while its
/// other core is busy (Docs/benchmarks.md, "fio beside a busy core").
enum BusyCore {
    private final class Flag: Sendable {
        let stop = Atomic<Bool>(false)
    }

    /// Runs `body` with a spinning thread beside it; the thread stops and is joined before this returns.
    static func during<T>(_ body: () throws -> T) throws -> T {
        let flag = Flag()
        let thread = try OSThread.spawn(name: "busy-core") {
            while !flag.stop.load(ordering: .relaxed) {}
        }
        defer {
            flag.stop.store(true, ordering: .relaxed)
            thread.join()
        }
        return try body()
    }
}
