import Glibc
import LinuxSupport
import Synchronization
import Testing

@Suite("Stoppable threads")
struct StoppableThreadTests {
    @Test("requestStop lets several threads wind down side by side, and stop waits for each")
    func requestedStopsOverlap() throws {
        let tally = Tally()
        var threads: [StoppableThread] = []
        for index in 0..<3 {
            threads.append(try StoppableThread(name: "stop-test\(index)") { stopEvent in
                _ = try? stopEvent.wait(timeoutMilliseconds: 10_000)
                tally.windingDown()
                MonotonicClock.sleep(.milliseconds(300))
                tally.done()
            })
        }
        for thread in threads { thread.requestStop() }
        for thread in threads { thread.stop() }
        // Stopped one after another, no two would ever wind down at the same time.
        #expect(tally.finished == 3 && tally.mostAtOnce >= 2)
    }

    @Test("stop returns once the body has returned and released its captures, without waiting for the thread's own exit")
    func stopDoesNotWaitForTheThreadsExit() throws {
        weak var watched: Tally?
        let thread: StoppableThread
        do {
            // Only the body holds it.
            let captured = Tally()
            watched = captured
            thread = try StoppableThread(name: "stop-exit-test") { [captured] stopEvent in
                // The key's destructor runs after the body, as part of the thread's exit, and
                // holds that exit until the test opens the gate: as the kernel holds the exit of
                // a thread whose io_uring requests a stalled file server keeps.
                pthread_setspecific(heldExitKey, UnsafeRawPointer(bitPattern: 1))
                _ = try? stopEvent.wait(timeoutMilliseconds: 10_000)
                captured.done()
            }
        }
        // However the test ends, the held exit is let go, once.
        var opened = false
        defer { if !opened { exitGate.post() } }
        let returned = try EventFD()
        let stopper = try OSThread.spawn(name: "stopper") {
            thread.stop()
            returned.signal()
        }
        let inTime = try returned.wait(timeoutMilliseconds: 5_000) != nil
        // Before joining the stopper: with a stop that joined the thread, it could not return.
        exitGate.post()
        opened = true
        stopper.join()
        #expect(inTime)
        #expect(watched == nil)
    }
}

/// Holds a thread's exit, in the destructor of `heldExitKey`, until posted.
private let exitGate = CountingSemaphore()
private let heldExitKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { _ in exitGate.wait() }
    return key
}()

private final class Tally: Sendable {
    private let state = Mutex((active: 0, most: 0, finished: 0))

    func windingDown() {
        state.withLock { state in
            state.active += 1
            state.most = max(state.most, state.active)
        }
    }

    func done() {
        state.withLock { state in
            state.active -= 1
            state.finished += 1
        }
    }

    var finished: Int { state.withLock { $0.finished } }
    var mostAtOnce: Int { state.withLock { $0.most } }
}
