import Glibc

/// A POSIX semaphore (sem_post/sem_wait, futex-based): `post(n)` lets `n` waiters through.
public final class CountingSemaphore: @unchecked Sendable {
    // SAFETY: `semaphore` is allocated and initialised in init and destroyed in deinit; sem_*
    // functions are thread-safe by definition.
    private let semaphore: UnsafeMutablePointer<sem_t>

    public init() {
        semaphore = .allocate(capacity: 1)
        sem_init(semaphore, 0, 0)
    }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    public func post(_ count: Int = 1) {
        for _ in 0..<max(count, 0) { sem_post(semaphore) }
    }

    /// Waits for a post (retrying when a signal interrupts the wait).
    public func wait() {
        while sem_wait(semaphore) != 0, errno == EINTR {}
    }
}
