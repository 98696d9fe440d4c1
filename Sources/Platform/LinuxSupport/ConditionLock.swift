import Glibc

/// A mutex with a condition variable (pthread), for threads that must sleep until a state
/// changes: paused virtual processors, request/response waits on a socket reader.
public final class ConditionLock<State: Sendable>: @unchecked Sendable {
    // SAFETY: `state` is only touched between pthread_mutex_lock and unlock on `mutex`;
    // the pthread objects are heap-allocated, initialised once and destroyed in deinit.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var state: State

    public init(_ initial: State) {
        state = initial
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    /// Runs `body` with the state locked, then wakes every waiter.
    @discardableResult
    public func update<T>(_ body: (inout State) -> T) -> T {
        pthread_mutex_lock(mutex)
        defer {
            pthread_cond_broadcast(condition)
            pthread_mutex_unlock(mutex)
        }
        return body(&state)
    }

    /// Reads the state.
    public func read<T>(_ body: (State) -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body(state)
    }

    /// Sleeps until `predicate` holds (or `timeoutNanoseconds` passes), then runs `body`.
    /// - Returns: `body`'s result, or `nil` on timeout.
    public func wait<T>(until predicate: (State) -> Bool, timeoutNanoseconds: UInt64? = nil,
                        then body: (inout State) -> T) -> T? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        var deadline = timespec()
        if let timeoutNanoseconds {
            clock_gettime(CLOCK_MONOTONIC, &deadline)
            let total = UInt64(deadline.tv_nsec) + timeoutNanoseconds
            deadline.tv_sec += Int(total / 1_000_000_000)
            deadline.tv_nsec = Int(total % 1_000_000_000)
        }
        while !predicate(state) {
            if timeoutNanoseconds != nil {
                if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT, !predicate(state) { return nil }
            } else {
                pthread_cond_wait(condition, mutex)
            }
        }
        let result = body(&state)
        pthread_cond_broadcast(condition)
        return result
    }
}
