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
}

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
