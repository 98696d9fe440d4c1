import Synchronization

/// Runs at most one operation per key at a time; callers that arrive while it runs share its
/// result instead of starting their own.
final class SingleFlight<Value: Sendable, Failure: Error>: Sendable {
    private let running = Mutex<[String: Task<Result<Value, Failure>, Never>]>([:])

    func run(key: String, _ operation: @escaping @Sendable () async throws(Failure) -> Value)
        async throws(Failure) -> Value
    {
        let task = running.withLock { tasks in
            if let existing = tasks[key] { return existing }
            let task = Task { () async -> Result<Value, Failure> in
                do throws(Failure) {
                    return .success(try await operation())
                } catch {
                    return .failure(error)
                }
            }
            tasks[key] = task
            return task
        }
        let result = await task.value
        running.withLock { tasks in
            // Forget the finished task so a failed build can be retried by the next caller.
            if tasks[key] == task { tasks[key] = nil }
        }
        return try result.get()
    }
}
