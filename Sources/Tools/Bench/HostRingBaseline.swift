import BenchProtocol
import GuestMemory
import LinuxSupport
import Synchronization
import VMBusHost
import VMBusProtocol

/// The baseline every channel figure is compared with, measured in the same run: the same
/// ring code (`RingWriter`/`RingReader` over `GuestRingMemory`) between two host threads over a
/// shared memfd, with the same ring size and batching as the bench guest, and no VM in the way.
public enum HostRingBaseline {
    /// Pages per ring: a control page and 127 data pages (512 KiB), as the bench guest uses.
    public static let ringPages = 128

    /// Messages per second moving `count` messages of `size` bytes one way.
    public static func throughput(size: Int, count: Int) throws -> Double {
        let memory = try GuestMemory.create(name: "baseline", size: ringPages * 4096 * 2)
        let pages = (0..<UInt64(ringPages)).map { $0 }
        let ring = try GuestRingMemory(memory: memory, pages: pages[...])
        let batch = max(1, 16_384 / size)
        let finished = Atomic<UInt64>(0)
        // The consumer drains with its interrupt mask set, committing in batches, as the VSP does.
        let consumer = try OSThread.spawn(name: "baseline-rx") {
            guard var reader = try? RingReader(memory: ring) else { return }
            var buffer = [UInt8](repeating: 0, count: size + 64)
            reader.beginPolling()
            var received = 0
            while received < count {
                if ((try? reader.next(into: &buffer)) ?? nil) != nil {
                    received += 1
                    if received % batch == 0 { _ = reader.commit() }
                } else {
                    _ = reader.commit()
                }
            }
            _ = reader.commit()
            finished.store(MonotonicClock.nanoseconds(), ordering: .releasing)
        }
        var writer = try RingWriter(memory: ring)
        var message = [UInt8](repeating: 0, count: size)
        BenchPattern.fill(&message, from: 0, to: size, sequence: 1)
        let started = MonotonicClock.nanoseconds()
        for sequence in 0..<count {
            message[0] = UInt8(truncatingIfNeeded: sequence)
            while true {
                do {
                    try writer.write(type: .inband, transactionID: 0, payload: message)
                    break
                } catch {
                    _ = writer.commit()
                }
            }
            if sequence % batch == batch - 1 { _ = writer.commit() }
        }
        _ = writer.commit()
        consumer.join()
        let seconds = Double(finished.load(ordering: .acquiring) &- started) / 1e9
        return Double(count) / seconds
    }

    /// Round-trip latencies (nanoseconds) of `size`-byte ping-pongs between two threads that
    /// both spin on their rings (the host-only counterpart of the polled round trip).
    public static func polledRoundTrips(size: Int, count: Int) throws -> [UInt64] {
        let memory = try GuestMemory.create(name: "baseline-rtt", size: ringPages * 4096 * 2)
        let pings = try GuestRingMemory(memory: memory, pages: (0..<UInt64(ringPages)).map { $0 }[...])
        let pongs = try GuestRingMemory(memory: memory, pages: (UInt64(ringPages)..<UInt64(2 * ringPages)).map { $0 }[...])
        let echo = try OSThread.spawn(name: "baseline-echo") {
            guard var reader = try? RingReader(memory: pings), var writer = try? RingWriter(memory: pongs) else { return }
            reader.beginPolling()
            var buffer = [UInt8](repeating: 0, count: size + 64)
            // One scratch array for every pong: the payload is copied into it, not allocated anew.
            var payload: [UInt8] = []
            payload.reserveCapacity(size + 64)
            var answered = 0
            while answered < count {
                guard let descriptor = (try? reader.next(into: &buffer)) ?? nil else { continue }
                _ = reader.commit()
                payload.removeAll(keepingCapacity: true)
                payload.append(contentsOf: buffer[descriptor.payloadOffset..<descriptor.totalLength])
                while (try? writer.write(type: .inband, transactionID: 0, payload: payload)) == nil { _ = writer.commit() }
                _ = writer.commit()
                answered += 1
            }
        }
        var writer = try RingWriter(memory: pings)
        var reader = try RingReader(memory: pongs)
        reader.beginPolling()
        let ping = [UInt8](repeating: 0xA5, count: size)
        var buffer = [UInt8](repeating: 0, count: size + 64)
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        for _ in 0..<count {
            let start = MonotonicClock.nanoseconds()
            while (try? writer.write(type: .inband, transactionID: 0, payload: ping)) == nil { _ = writer.commit() }
            _ = writer.commit()
            while ((try? reader.next(into: &buffer)) ?? nil) == nil {}
            _ = reader.commit()
            samples.append(MonotonicClock.nanoseconds() &- start)
        }
        echo.join()
        return samples
    }
}
