import Glibc
import LinuxSupport
import Synchronization
import Testing

/// `Tests/CMutexAnnotations`: under ThreadSanitizer, a contended `Mutex` hands the lock over with
/// an edge the sanitizer sees, so `.ci/sanitizers` needs no suppressions (Docs/testing.md#sanitizers).
@Suite("Mutex under ThreadSanitizer")
struct MutexSanitizerTests {
    static let lockSlow = "$s15Synchronization12_MutexHandleV9_lockSlowyys6UInt32VF"

    /// Whether this test binary was built with -sanitize=thread (its runtime is linked in).
    static var underThreadSanitizer: Bool { dlsym(nil, "__tsan_acquire") != nil }

    @Test func theLockSlowPathIsTheAnnotatedOneExactlyUnderThreadSanitizer() throws {
        let library = try #require(dlopen("libswiftSynchronization.so", RTLD_NOW | RTLD_NOLOAD),
                                   "the test binary links libswiftSynchronization")
        let libraries = try #require(dlsym(library, Self.lockSlow))
        let called = try #require(dlsym(nil, Self.lockSlow))
        if Self.underThreadSanitizer {
            #expect(called != libraries, "calls bind to mutex_annotations.c, which calls the library's own")
        } else {
            #expect(called == libraries, "outside ThreadSanitizer nothing stands in between")
        }
    }

    /// Four threads take turns on one lock often enough that it is contended, and so handed over
    /// in the slow path, many times; the counter they share is a plain variable. Without the
    /// annotations ThreadSanitizer reports its increments as races, and the run fails.
    @Test func aContendedMutexOrdersWhatItGuards() throws {
        final class Guarded: @unchecked Sendable {
            let lock = Mutex<Void>(())
            /// Touched only inside `lock.withLock`.
            var count = 0
        }
        let guarded = Guarded()
        let perThread = 20_000
        let threads = try (0..<4).map { index in
            try OSThread.spawn(name: "contend-\(index)") {
                for _ in 0..<perThread { guarded.lock.withLock { _ in guarded.count += 1 } }
            }
        }
        for thread in threads { thread.join() }
        #expect(guarded.lock.withLock { _ in guarded.count } == 4 * perThread)
    }
}
