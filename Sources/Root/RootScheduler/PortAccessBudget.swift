import LinuxSupport
import Synchronization

/// How fast a partition's port accesses go to the parent: a token bucket, so a guest that
/// hammers an emulated device (COM1) is throttled — its processor sleeps — instead of keeping
/// the root's and the parent's threads busy on its behalf while its neighbours wait for a core.
///
/// The rate lets COM1 run a little faster than a 115200-baud line: a byte written by polling
/// takes one LSR read and one THR write, and the line carries 11,520 bytes a second
/// (Linux's `drivers/tty/serial/8250/8250_port.c: serial8250_console_putchar` waits for THRE
/// before each byte).
final class PortAccessBudget: Sendable {
    private let state: Mutex<(tokens: Double, last: UInt64)>
    let perSecond: Double
    let burst: Double

    /// Accesses per second, and how many may come at once.
    static let defaultRate = 32_000.0
    static let defaultBurst = 4096.0
    /// The fastest pace a device may ask for (`DeviceContext.interceptPorts`): well above what
    /// the parent's round trips allow, so it never limits a device that moves data, while a
    /// device's budget stays finite.
    static let highestRate = 1_000_000.0
    /// The longest a processor sleeps for one access.
    static let longestWait: UInt64 = 10_000_000

    init(perSecond: Double = PortAccessBudget.defaultRate, burst: Double = PortAccessBudget.defaultBurst) {
        self.perSecond = perSecond
        self.burst = burst
        state = Mutex((burst, MonotonicClock.nanoseconds()))
    }

    /// Takes one access's token; returns how long the caller must wait first (nil: not at all).
    /// - Parameter now: the time (tests pass one); by default the clock is read under the lock,
    ///   so processors that take tokens at once never see time run backwards.
    func take(now given: UInt64? = nil) -> UInt64? {
        state.withLock { state -> UInt64? in
            let now = max(given ?? MonotonicClock.nanoseconds(), state.last)
            let elapsed = Double(now - state.last) / 1e9
            state.last = now
            state.tokens = min(burst, state.tokens + elapsed * perSecond)
            // The debt stops where one longest wait repays it: processors that each sleep the
            // longest wait may still outrun a very low rate, and a debt beyond that would throttle
            // the partition long after they stopped (and, unbounded, overflow the conversion below).
            state.tokens = max(state.tokens - 1, -Double(Self.longestWait) / 1e9 * perSecond)
            guard state.tokens < 0 else { return nil }
            return min(UInt64(-state.tokens / perSecond * 1e9), Self.longestWait)
        }
    }

    /// Waits as `take` says (on the accessing processor's thread: never under a lock).
    func pace() {
        if let wait = take(), wait > 0 { MonotonicClock.sleep(.nanoseconds(Int64(wait))) }
    }
}
