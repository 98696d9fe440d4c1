import HyperV
import NetworkProtocol
import VMBusClient

/// The frames `hv bench network` moves: EtherType 0x88B5 (IEEE 802 local experimental), then
/// u32 magic "hvnb", u32 the frame's size, u64 a sequence number, the rest a fixed pattern.
public enum BenchFrame {
    public static var etherType: UInt16 { 0x88B5 }
    public static var magic: UInt32 { 0x6876_6E62 }
    /// The smallest bench frame: header and the fields above.
    public static var minimumSize: Int { 30 }

    /// A bench frame of `size` bytes.
    public static func make(from source: MACAddress, to destination: MACAddress, size: Int, sequence: UInt64) -> [UInt8] {
        var frame = destination.bytes + source.bytes
        frame.append(UInt8(etherType >> 8))
        frame.append(UInt8(etherType & 0xFF))
        frame.appendLittleEndian(magic)
        frame.appendLittleEndian(UInt32(truncatingIfNeeded: size))
        frame.appendLittleEndian(sequence)
        var fill: UInt8 = 0
        while frame.count < size {
            frame.append(fill)
            fill &+= 1
        }
        return frame
    }

    /// Writes `sequence` into a frame `make` built.
    public static func stamp(_ frame: inout [UInt8], sequence: UInt64) {
        frame.storeLittleEndian(sequence, at: 22)
    }

    /// The size and sequence of a bench frame, from at least its first 30 bytes; `nil` for
    /// anything else or a frame whose length disagrees with its size field.
    public static func parse(_ prefix: [UInt8], length: Int) -> (size: Int, sequence: UInt64)? {
        guard prefix.count >= minimumSize, prefix[12] == UInt8(etherType >> 8), prefix[13] == UInt8(etherType & 0xFF),
              prefix.littleEndian(UInt32.self, at: 14) == magic,
              let size = prefix.littleEndian(UInt32.self, at: 18), Int(size) == length,
              let sequence = prefix.littleEndian(UInt64.self, at: 22) else { return nil }
        return (Int(size), sequence)
    }
}

/// One size's result of a bench receive phase.
public struct BenchReceipt {
    public var size: Int
    public var frames = 0
    /// Channel timestamps of the first and last frame.
    public var first: UInt64 = 0
    public var last: UInt64 = 0
    /// Frames whose sequence was not the next one expected (lost or reordered before them).
    public var gaps = 0
    var expected: UInt64 = 0
}

extension NetworkVSC {
    /// Reads what has arrived; if nothing has for `spinNanoseconds`, lets the processor sleep
    /// until the host signals (or 200 µs pass), so a guest waiting for the host leaves the host's
    /// threads the CPU. The short spin first keeps a host that is completing as it reads from
    /// having to wake a halted guest for every batch; while it spins, the ring's interrupt_mask
    /// is set, so the host does not interrupt a guest that is reading anyway (an interrupt costs
    /// this guest tens of microseconds in its kernel).
    mutating func idleUntilHost(spinNanoseconds: UInt64 = 50_000) {
        let start = channel.timestamp()
        let limit = channel.ticks(nanoseconds: spinNanoseconds)
        channel.beginPolling()
        while channel.timestamp() &- start < limit {
            if poll(copyFrames: false, { _ in }) > 0 {
                _ = channel.endPolling()
                return
            }
            channel.relax()
        }
        let interrupts = channel.interruptCount
        // Unmasked, with nothing that slipped in: the host signals what comes next.
        if channel.endPolling() { return }
        if poll(copyFrames: false, { _ in }) == 0 { waitQuietly(since: interrupts) }
    }

    /// Sleeps until the host signals, unless it already did since `interrupts` was read.
    func waitQuietly(since interrupts: UInt64? = nil) {
        if let interrupts, channel.interruptCount != interrupts { return }
        channel.waitForHost(nanoseconds: 200_000)
    }

    /// Sends `count` bench frames of `size` bytes to `destination` as fast as sections and the
    /// ring allow, reaping completions as it goes.
    /// - Returns: frames sent and the nanoseconds it took (until the last was handed over).
    public mutating func sendBench(size: Int, count: Int, to destination: MACAddress,
                                   timeoutNanoseconds: UInt64 = 60_000_000_000) -> (sent: Int, nanoseconds: UInt64) {
        var frame = BenchFrame.make(from: macAddress, to: destination, size: size, sequence: 0)
        let begin = channel.timestamp()
        let deadline = begin &+ channel.ticks(nanoseconds: timeoutNanoseconds)
        var sent = 0
        while sent < count {
            BenchFrame.stamp(&frame, sequence: UInt64(sent))
            if transmit(frame) {
                sent += 1
                continue
            }
            guard channel.timestamp() < deadline else { break }
            flush()
            idleUntilHost()
        }
        flush()
        return (sent, channel.nanoseconds(from: begin, to: channel.timestamp()))
    }

    /// Counts bench frames of each of `sizes` until `count` of each have arrived, or nothing has
    /// arrived for `idleNanoseconds` after the first frame (or `timeoutNanoseconds` before it).
    /// Other frames go to `endpoint`, so ARP and pings are answered meanwhile.
    public mutating func receiveBench(sizes: [Int], count: Int, idleNanoseconds: UInt64, timeoutNanoseconds: UInt64,
                                      endpoint: inout IPv4Endpoint) -> [BenchReceipt] {
        var receipts = sizes.map { BenchReceipt(size: $0) }
        let start = channel.timestamp()
        var lastFrame: UInt64 = 0
        var quietSince: UInt64 = 0
        var replies: [[UInt8]] = []
        // Polling: the host need not interrupt (see `idleUntilHost`); unmasked only to halt.
        channel.beginPolling()
        defer { _ = channel.endPolling() }
        while true {
            let now = channel.timestamp()
            if receipts.allSatisfy({ $0.frames >= count }) { break }
            if lastFrame == 0, channel.nanoseconds(from: start, to: now) > timeoutNanoseconds { break }
            if lastFrame != 0, channel.nanoseconds(from: lastFrame, to: now) > idleNanoseconds { break }
            var touched: [Int] = []
            let interrupts = channel.interruptCount
            let read = poll(copyFrames: false) { frame in
                if let (size, sequence) = BenchFrame.parse(frame.bytes, length: frame.length),
                   let index = receipts.firstIndex(where: { $0.size == size }) {
                    if sequence != receipts[index].expected { receipts[index].gaps += 1 }
                    receipts[index].expected = sequence &+ 1
                    receipts[index].frames += 1
                    if !touched.contains(index) { touched.append(index) }
                } else if frame.length <= frame.bytes.count, case .reply(let reply) = endpoint.handle(frame.bytes) {
                    replies.append(reply)
                }
            }
            // Frames are stamped with the time their batch was read (at most 64 ring packets).
            if !touched.isEmpty {
                let stamp = channel.timestamp()
                for index in touched {
                    if receipts[index].first == 0 { receipts[index].first = stamp }
                    receipts[index].last = stamp
                }
                lastFrame = stamp
            }
            for reply in replies { _ = transmit(reply) }
            if !replies.isEmpty {
                flush()
                replies.removeAll()
            }
            // Spin a little before halting: a halted guest takes tens of microseconds to wake,
            // and frames queue up (and drop) meanwhile.
            if read > 0 {
                quietSince = 0
            } else if quietSince == 0 {
                quietSince = channel.timestamp()
            } else if channel.nanoseconds(from: quietSince, to: channel.timestamp()) > 50_000 {
                if !channel.endPolling() { waitQuietly(since: interrupts) }
                channel.beginPolling()
            } else {
                channel.relax()
            }
        }
        return receipts
    }

    /// Answers ARP and pings for `endpoint` from what has arrived; returns whether anything did.
    @discardableResult
    public mutating func serve(_ endpoint: inout IPv4Endpoint) -> Bool {
        var replies: [[UInt8]] = []
        let read = poll(copyFrames: true) { frame in
            if case .reply(let reply) = endpoint.handle(frame.bytes) { replies.append(reply) }
        }
        for reply in replies { _ = transmit(reply) }
        if !replies.isEmpty { flush() }
        return read > 0
    }

    /// Pings `peer` `count` times, one echo request at a time, after resolving its MAC address
    /// with ARP; answers ARP and pings meanwhile.
    /// - Returns: the round trips in nanoseconds of the replies that came (a request unanswered
    ///   within `timeoutNanoseconds` is lost).
    public mutating func ping(_ peer: UInt32, count: Int, endpoint: inout IPv4Endpoint, dataSize: Int = 56,
                              timeoutNanoseconds: UInt64 = 1_000_000_000) -> [UInt64] {
        var samples: [UInt64] = []
        guard let mac = resolve(peer, endpoint: &endpoint, timeoutNanoseconds: 3 * timeoutNanoseconds) else { return samples }
        let identifier = UInt16(truncatingIfNeeded: macAddress.rawValue)
        for sequence in 0..<count {
            let request = endpoint.echoRequest(to: mac, ip: peer, identifier: identifier, sequence: UInt16(truncatingIfNeeded: sequence),
                                               dataSize: dataSize)
            let sent = channel.timestamp()
            guard transmit(request), flush() else { continue }
            let deadline = sent &+ channel.ticks(nanoseconds: timeoutNanoseconds)
            var answered = false
            var replies: [[UInt8]] = []
            // The guest spins for the reply: the host need not interrupt it to deliver it.
            channel.beginPolling()
            defer { _ = channel.endPolling() }
            while !answered && channel.timestamp() < deadline {
                let read = poll(copyFrames: true) { frame in
                    switch endpoint.handle(frame.bytes) {
                    case .echoReply(let from, let id, let number) where from == peer && id == identifier
                        && number == UInt16(truncatingIfNeeded: sequence):
                        answered = true
                    case .reply(let reply):
                        replies.append(reply)
                    default:
                        break
                    }
                }
                if answered { samples.append(channel.nanoseconds(from: sent, to: channel.timestamp())) }
                for reply in replies { _ = transmit(reply) }
                if !replies.isEmpty {
                    flush()
                    replies.removeAll()
                }
                if read == 0 { channel.relax() }
            }
        }
        return samples
    }

    /// The MAC address of `peer`, asking with ARP (once a second) until `timeoutNanoseconds`.
    public mutating func resolve(_ peer: UInt32, endpoint: inout IPv4Endpoint, timeoutNanoseconds: UInt64) -> MACAddress? {
        let start = channel.timestamp()
        var asked: UInt64 = 0
        while channel.nanoseconds(from: start, to: channel.timestamp()) < timeoutNanoseconds {
            if let mac = endpoint.neighbour(peer) { return mac }
            let now = channel.timestamp()
            if asked == 0 || channel.nanoseconds(from: asked, to: now) > 1_000_000_000 {
                _ = transmit(endpoint.arpRequest(for: peer))
                flush()
                asked = now
            }
            if !serve(&endpoint) { channel.relax() }
        }
        return endpoint.neighbour(peer)
    }
}
