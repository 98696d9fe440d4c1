import Foundation
import LinuxSupport
import NetworkProtocol
import NetworkVSC
import Synchronization

/// The host-only figures `hv bench network` compares the hypervisor's with, measured in the same
/// run with the same frames and the same counting: a TAP written and read by host threads, and
/// a veth pair between two network namespaces (frames and pings).
enum NetworkBaselines {
    static let tapName = "hvb-tap0"
    static let namespaces = ("hvb-nsa", "hvb-nsb")
    static let veth = ("hvb-va", "hvb-vb")
    /// 10.213.78.1 and .2.
    static let vethAddresses: (UInt32, UInt32) = (0x0AD5_4E01, 0x0AD5_4E02)
    static let source = MACAddress(0x02, 0x00, 0x00, 0xB0, 0x00, 0x01)
    static let sink = MACAddress(0x02, 0x00, 0x00, 0xB0, 0x00, 0x02)

    /// Frames into the host through a TAP: a thread writes them (as the parent's pump does) and
    /// the interface's rx_packets counter is sampled, as for the guest's frames.
    static func tapWrite(sizes: [Int], count: Int, mtu: Int) throws -> [FrameTally] {
        let (tap, name) = try TAPDevice.create(name: tapName)
        try TAPDevice.configure(tap, headerSize: 12, offloads: [.checksum])
        let control = try NetworkInterface.controlSocket()
        try NetworkInterface.setMTU(name, mtu, using: control)
        try NetworkInterface.setUp(name, true, using: control)
        let counter = try SysfsCounter(path: "/sys/class/net/\(name)/statistics/rx_packets")
        let ready = BenchFlag()
        let stop = BenchFlag()
        let result = Mutex<Result<[FrameTally], SystemError>>(.success([]))
        let sampler = try OSThread.spawn(name: "tap-sample") {
            do throws(SystemError) {
                let tallies = try HostFrames.sampleBursts(counter, sizes: sizes, minimumFrames: count / 2, gap: .milliseconds(150),
                                                          timeout: .seconds(120), ready: ready, stop: stop)
                result.withLock { $0 = .success(tallies) }
            } catch {
                result.withLock { $0 = .failure(error) }
            }
        }
        _ = ready.wait(seconds: 5)
        let sent = try HostFrames.send(on: tap, header: [UInt8](repeating: 0, count: 12), sizes: sizes, count: count,
                                       from: source, to: sink, gap: .milliseconds(300), stop: stop)
        sampler.join()
        return withSendWindows(try result.withLock { $0 }.get(), sent)
    }

    /// Frames out of the host through a TAP: a thread sends them on the interface (a packet
    /// socket) and another reads them from the TAP, as the parent's pump does.
    static func tapRead(sizes: [Int], count: Int, mtu: Int) throws -> [FrameTally] {
        let (tap, name) = try TAPDevice.create(name: tapName)
        try TAPDevice.configure(tap, headerSize: 12, offloads: [.checksum])
        let control = try NetworkInterface.controlSocket()
        try NetworkInterface.setMTU(name, mtu, using: control)
        try NetworkInterface.setUp(name, true, using: control)
        let sender = try PacketSocket.open(interface: name, promiscuous: false, virtioHeader: false)
        return try receiveWhileSending(reader: tap, headerSize: 12, sender: sender, sizes: sizes, count: count)
    }

    /// Frames from one namespace to another through a veth pair: a thread sends on one end, one
    /// reads the other (both packet sockets).
    static func veth(sizes: [Int], count: Int, mtu: Int) throws -> [FrameTally] {
        try withVethPair(mtu: mtu) {
            let sender = try inNamespace(namespaces.0) { () throws(SystemError) in
                try PacketSocket.open(interface: veth.0, promiscuous: false, virtioHeader: false)
            }
            let reader = try inNamespace(namespaces.1) { () throws(SystemError) in
                try PacketSocket.open(interface: veth.1, promiscuous: true, virtioHeader: false)
            }
            return try receiveWhileSending(reader: reader, headerSize: 0, sender: sender, sizes: sizes, count: count)
        }
    }

    /// Ping round trips (ns) from one namespace to the other through the veth pair.
    static func vethPing(count: Int) throws -> [UInt64] {
        try withVethPair(mtu: 1500) {
            let echo = try inNamespace(namespaces.0) { () throws(SystemError) in try ICMPEcho(identifier: 0x6876) }
            var samples: [UInt64] = []
            _ = try echo.ping(vethAddresses.1, sequence: 0)  // ARP first
            for sequence in 1...max(1, count) {
                if let sample = try echo.ping(vethAddresses.1, sequence: UInt16(truncatingIfNeeded: sequence)) {
                    samples.append(sample)
                }
            }
            return samples
        }
    }

    static func receiveWhileSending(reader: OwnedDescriptor, headerSize: Int, sender: OwnedDescriptor, sizes: [Int],
                                    count: Int) throws -> [FrameTally] {
        let ready = BenchFlag()
        let stop = BenchFlag()
        let result = Mutex<Result<[FrameTally], SystemError>>(.success([]))
        let receiver = try OSThread.spawn(name: "bench-rx") {
            do throws(SystemError) {
                let tallies = try HostFrames.receive(on: reader, headerSize: headerSize, sizes: sizes, count: count,
                                                     idle: .seconds(1), timeout: .seconds(60), ready: ready, stop: stop)
                result.withLock { $0 = .success(tallies) }
            } catch {
                result.withLock { $0 = .failure(error) }
            }
        }
        _ = ready.wait(seconds: 5)
        let sent: [(frames: Int, nanoseconds: UInt64)]
        do {
            sent = try HostFrames.send(on: sender, header: [], sizes: sizes, count: count, from: source, to: sink,
                                       gap: .milliseconds(300), stop: stop)
        } catch {
            stop.set()
            receiver.join()
            throw error
        }
        receiver.join()
        return withSendWindows(try result.withLock { $0 }.get(), sent)
    }

    /// The tallies with each size's send window set (sizes in the order they were sent).
    static func withSendWindows(_ tallies: [FrameTally], _ sent: [(frames: Int, nanoseconds: UInt64)]) -> [FrameTally] {
        tallies.enumerated().map { index, tally in
            var tally = tally
            if index < sent.count { tally.sendNanoseconds = sent[index].nanoseconds }
            return tally
        }
    }

    // MARK: Namespaces

    /// Runs `body` on a thread that entered network namespace `name` (sockets it opens stay there).
    static func inNamespace<T: Sendable>(_ name: String, _ body: @escaping @Sendable () throws(SystemError) -> T) throws -> T {
        let result = Mutex<Result<T, SystemError>?>(nil)
        let thread = try OSThread.spawn(name: "netns") {
            do throws(SystemError) {
                try NetworkNamespace.enter(path: "/run/netns/\(name)")
                let value = try body()
                result.withLock { $0 = .success(value) }
            } catch {
                result.withLock { $0 = .failure(error) }
            }
        }
        thread.join()
        guard let outcome = result.withLock({ $0 }) else { throw SystemError("enter namespace \(name)", errno: .ioError) }
        return try outcome.get()
    }

    /// Creates the two namespaces and the veth pair between them (with `ip`), runs `body`, and
    /// removes them.
    static func withVethPair<T>(mtu: Int, _ body: () throws -> T) throws -> T {
        removeVethPair()
        defer { removeVethPair() }
        try ip(["netns", "add", namespaces.0])
        try ip(["netns", "add", namespaces.1])
        try ip(["link", "add", veth.0, "netns", namespaces.0, "type", "veth", "peer", "name", veth.1, "netns", namespaces.1])
        for (namespace, interface, address) in [(namespaces.0, veth.0, "10.213.78.1/24"), (namespaces.1, veth.1, "10.213.78.2/24")] {
            try ip(["-n", namespace, "link", "set", interface, "mtu", "\(mtu)", "up"])
            try ip(["-n", namespace, "addr", "add", address, "dev", interface])
        }
        return try body()
    }

    static func removeVethPair() {
        try? ip(["netns", "del", namespaces.0], quiet: true)
        try? ip(["netns", "del", namespaces.1], quiet: true)
    }

    /// Runs iproute2's `ip` (Debian's iproute2 package).
    static func ip(_ arguments: [String], quiet: Bool = false) throws {
        let ip = FileManager.default.fileExists(atPath: "/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip"
        let result = try HostCommand.run(ip, arguments)
        guard result.status == 0 else {
            throw NetworkBenchError.hostSetup("ip \(arguments.joined(separator: " ")): \(result.errors.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }
}

/// Why the network bench could not run.
public enum NetworkBenchError: Error, CustomStringConvertible {
    case hostSetup(String)
    case guest(String)

    public var description: String {
        switch self {
        case .hostSetup(let reason): "Cannot set up the host side of the network bench: \(reason) (it needs root: CAP_NET_ADMIN, CAP_SYS_ADMIN)."
        case .guest(let reason): "A bench guest failed: \(reason)."
        }
    }
}
