import BenchProtocol
import DeviceModel
import Foundation
import LinuxSupport
import LocalDeployment
import ManagementAPI
import NetworkProtocol
import NetworkVSC
import Synchronization

/// `hv bench network`: frames per second and Gbit/s of the synthetic NIC guest→host (through
/// the internal switch's TAP), host→guest and guest→guest (across a private switch), and ping
/// round trips, each next to a host-only baseline measured in the same run (Docs/benchmarks.md).
public enum NetworkBenchmark {
    public struct Options: Sendable {
        /// Frame sizes in bytes (the Ethernet header included, no FCS).
        public var sizes: [Int]
        /// Frames each direction moves per size.
        public var frames: Int
        /// Echo requests per ping measurement.
        public var pings: Int
        /// The switches' MTU (9000 lets 9014-byte frames through).
        public var mtu: Int

        public init(sizes: [Int] = [64, 1514, 9014], frames: Int = 100_000, pings: Int = 200, mtu: Int = 9000) {
            self.sizes = sizes
            self.frames = frames
            self.pings = pings
            self.mtu = mtu
        }
    }

    static let internalSwitch = "netbench"
    static let privateSwitch = "netbench-p"
    static let tapName = "hvb-int0"
    /// 10.213.77.1 (the TAP) and 10.213.77.2 (the guest).
    static let hostAddress: UInt32 = 0x0AD5_4D01
    static let guestMAC = MACAddress(0x00, 0x15, 0x5D, 0xBE, 0x00, 0x01)
    static let receiverMAC = MACAddress(0x00, 0x15, 0x5D, 0xBE, 0x00, 0x02)
    static let senderMAC = MACAddress(0x00, 0x15, 0x5D, 0xBE, 0x00, 0x03)
    /// Where the guest sends its frames for the host: no port has it, so the internal switch
    /// floods them to its only other port, the TAP.
    static let hostSink = MACAddress(0x02, 0x00, 0x00, 0xB0, 0x00, 0x09)

    /// Runs the benchmark on a root and parent of its own.
    public static func run(_ options: Options, executable: String, packageRoot: String, runtimeDirectory: String,
                           progress: @Sendable (String) -> Void) async throws -> NetworkReport {
        progress("starting the root scheduler and the parent partition")
        let deployment = try await LocalDeployment.start(executable: executable, runtimeDirectory: runtimeDirectory)
        defer { deployment.stop() }
        return try await run(options, on: deployment, packageRoot: packageRoot, progress: progress)
    }

    /// Runs the benchmark with switches and children of `deployment`, removed afterwards.
    public static func run(_ options: Options, on deployment: LocalDeployment, packageRoot: String,
                           progress: @Sendable (String) -> Void) async throws -> NetworkReport {
        let sizes = options.sizes
        let load = loadAverage()
        progress("host-only baselines: TAP written and read by threads, a veth pair between two namespaces")
        let baselinesStart = ProcessorTime.now()
        let tapWrite = try NetworkBaselines.tapWrite(sizes: sizes, count: options.frames, mtu: options.mtu)
        let tapRead = try NetworkBaselines.tapRead(sizes: sizes, count: options.frames, mtu: options.mtu)
        let veth = try NetworkBaselines.veth(sizes: sizes, count: options.frames, mtu: options.mtu)
        let vethPing = try NetworkBaselines.vethPing(count: options.pings).sorted()
        progress("host-only ring baseline (as hv bench channel measures it)")
        let ringRates = try (0..<3).map { _ in try HostRingBaseline.throughput(size: 64, count: 1 << 20) }.sorted()
        let ringRate = ringRates[1]
        let baselinesTime = ProcessorTime.accumulate(.zero, since: baselinesStart)
        progress("raw signalling chain (a bench child)")
        let rawChain = try await rawChainP50(deployment, packageRoot: packageRoot)

        try await createSwitch(deployment, SwitchConfiguration(name: internalSwitch, kind: "internal", hostInterface: tapName,
                                                               mtu: options.mtu))
        try await createSwitch(deployment, SwitchConfiguration(name: privateSwitch, kind: "private", mtu: options.mtu))
        let measured: Measured
        let guestsStart = ProcessorTime.now()
        do {
            measured = try await measureGuests(options, deployment, packageRoot: packageRoot, progress: progress)
        } catch {
            for name in ["nb-host", "nb-rx", "nb-tx"] { try? await deployment.delete(name) }
            await removeSwitches(deployment)
            throw error
        }
        let guestsTime = ProcessorTime.accumulate(.zero, since: guestsStart)
        await removeSwitches(deployment)
        // The figures.
        let guestToHost = measured.guestToHost
        let hostSendNanoseconds = measured.hostSendNanoseconds
        let hostToGuest = GuestLines(measured.hostConsole)
        let receiver = GuestLines(measured.receiverConsole)
        let sent = hostToGuest.sent
        let guestSent = GuestLines(measured.senderConsole).sent
        var points: [NetworkReport.Point] = []
        for size in sizes {
            let baseline = tapWrite.first { $0.size == size }
            var measured = guestToHost.first { $0.size == size }
            measured?.sendNanoseconds = sent[size]?.nanoseconds ?? 0
            var point = NetworkReport.Point(
                direction: "guest-to-host", size_bytes: size, frames_per_s: measured?.framesPerSecond ?? 0,
                frames_sent: sent[size]?.frames ?? 0, frames_received: measured?.frames ?? 0,
                baseline: "host thread writing the TAP", baseline_frames_per_s: baseline?.framesPerSecond ?? 0)
            point.offered_frames_per_s = offered(sent[size])
            if size == 1514 { point.setTarget("frames_per_s / baseline_frames_per_s ≥", 0.8, value: point.ratio) }
            points.append(point)
        }
        for (index, size) in sizes.enumerated() {
            let baseline = tapRead.first { $0.size == size }
            var measured = hostToGuest.received[size]
            measured?.sendNanoseconds = index < hostSendNanoseconds.count ? hostSendNanoseconds[index] : 0
            var point = NetworkReport.Point(
                direction: "host-to-guest", size_bytes: size, frames_per_s: measured?.framesPerSecond ?? 0,
                frames_sent: options.frames, frames_received: measured?.frames ?? 0,
                baseline: "host thread reading the TAP", baseline_frames_per_s: baseline?.framesPerSecond ?? 0)
            point.offered_frames_per_s = offered((options.frames, measured?.sendNanoseconds ?? 0))
            points.append(point)
        }
        for size in sizes {
            let baseline = veth.first { $0.size == size }
            var measured = receiver.received[size]
            measured?.sendNanoseconds = guestSent[size]?.nanoseconds ?? 0
            var point = NetworkReport.Point(
                direction: "guest-to-guest", size_bytes: size, frames_per_s: measured?.framesPerSecond ?? 0,
                frames_sent: guestSent[size]?.frames ?? 0, frames_received: measured?.frames ?? 0,
                baseline: "veth pair between two namespaces", baseline_frames_per_s: baseline?.framesPerSecond ?? 0)
            point.offered_frames_per_s = offered(guestSent[size])
            if size == 64 {
                point.ring_baseline_messages_per_s = ringRate
                point.setTarget("frames_per_s / host-only ring messages_per_s (64 B) ≥", 0.5,
                                value: ringRate > 0 ? point.frames_per_s / ringRate : 0)
            }
            points.append(point)
        }
        let ping = hostToGuest.ping
        let vethP50 = vethPing.isEmpty ? 0 : Double(vethPing[vethPing.count / 2]) / 1000
        let vethP99 = vethPing.isEmpty ? 0 : Double(vethPing[min(vethPing.count - 1, vethPing.count * 99 / 100)]) / 1000
        let limit = 1.5 * (vethP50 + rawChain)
        let pingReport = NetworkReport.Ping(
            replies: ping.replies, sent: ping.sent, p50_us: ping.p50, p99_us: ping.p99, veth_p50_us: vethP50,
            veth_p99_us: vethP99, raw_chain_p50_us: rawChain,
            target: "p50_us ≤ 1.5 × (veth_p50_us + raw_chain_p50_us)", target_us: limit,
            met: ping.replies == ping.sent && ping.sent > 0 && ping.p50 <= limit)
        var losses: [NetworkReport.Losses] = []
        for (direction, drops) in [("host-to-guest", measured.hostToGuestDrops), ("guest-to-guest", measured.guestToGuestDrops)] {
            let directionPoints = points.filter { $0.direction == direction }
            losses.append(NetworkReport.Losses(direction: direction, frames_sent: directionPoints.reduce(0) { $0 + $1.frames_sent },
                                               frames_received: directionPoints.reduce(0) { $0 + $1.frames_received },
                                               drops: drops))
        }
        let formatter = ISO8601DateFormatter()
        return NetworkReport(points: points, ping: pingReport, losses: losses, mtu: options.mtu, frames: options.frames,
                             date: formatter.string(from: Date()), machine: ChannelBenchmark.machineDescription(),
                             load_average: load, steal_percent_baselines: baselinesTime?.stealPercent,
                             steal_percent_guests: guestsTime?.stealPercent)
    }

    struct Measured {
        var guestToHost: [FrameTally]
        var hostSendNanoseconds: [UInt64]
        var hostConsole: [String]
        var receiverConsole: [String]
        var senderConsole: [String]
        var hostToGuestDrops: DropCounts
        var guestToGuestDrops: DropCounts
    }

    /// Frames dropped on the way to a receiving child, by where: the host TAP's tx_dropped (the
    /// parent's pump did not read it in time), the child's switch port (its queue full), its
    /// NIC. `nil` where the counter could not be read.
    struct DropCounts {
        var hostTAP: Int?
        var switchPort: Int?
        var nic: Int?

        /// What happened between `start` and `self`: known where both ends are.
        func since(_ start: DropCounts) -> DropCounts {
            func difference(_ end: Int?, _ start: Int?) -> Int? {
                guard let end, let start else { return nil }
                return end - start
            }
            return DropCounts(hostTAP: difference(hostTAP, start.hostTAP), switchPort: difference(switchPort, start.switchPort),
                              nic: difference(nic, start.nic))
        }
    }

    /// A child's NIC drop counters as its parent last reported them (`hv partition show`). The
    /// parent reports them once a second when they changed, so this waits a little over that
    /// first; the bench reads them when its frames have stopped (before a direction starts,
    /// and after its receiver went quiet for 2 s), so the figures are final.
    static func nicDrops(_ deployment: LocalDeployment, _ name: String, mac: MACAddress) async throws -> DropCounts {
        try await Task.sleep(for: .milliseconds(1200))
        let status = try await deployment.info(name).status
        func value(_ key: String) -> Int? { status["nic.\(mac.text).\(key)"].flatMap(Int.init) }
        return DropCounts(switchPort: value("port_queue_full"), nic: value("rx_drops"))
    }

    /// The guests' part: guest → host, the ping and host → guest with one child on the internal
    /// switch, then guest → guest with two on the private switch.
    static func measureGuests(_ options: Options, _ deployment: LocalDeployment, packageRoot: String,
                              progress: @Sendable (String) -> Void) async throws -> Measured {
        let sizes = options.sizes
        let image = try await guestImage(packageRoot: packageRoot)
        let control = try NetworkInterface.controlSocket()
        try NetworkInterface.setIPv4Address(tapName, hostAddress, prefix: 24, using: control)

        progress("guest → host, ping, host → guest: a child on internal switch \(internalSwitch)")
        // The host tells the guest's bursts apart by the quiet between them: the guest waits 1 s
        // between sizes, the sampler splits at 150 ms, so the parent draining its backlog or the
        // sampler thread waiting for a core cannot merge two bursts.
        let counter = try SysfsCounter(path: "/sys/class/net/\(tapName)/statistics/rx_packets")
        let samplerReady = BenchFlag()
        let stop = BenchFlag()
        let sampled = Mutex<Result<[FrameTally], SystemError>>(.success([]))
        let frames = options.frames
        let sampler = try OSThread.spawn(name: "tap-sample") {
            do throws(SystemError) {
                let tallies = try HostFrames.sampleBursts(counter, sizes: sizes, minimumFrames: frames / 2,
                                                          gap: .milliseconds(150), timeout: .seconds(300),
                                                          ready: samplerReady, stop: stop)
                sampled.withLock { $0 = .success(tallies) }
            } catch {
                sampled.withLock { $0 = .failure(error) }
            }
        }
        _ = samplerReady.wait(seconds: 5)
        let sizeList = sizes.map(String.init).joined(separator: ",")
        let hostArguments = "mode=net ip=10.213.77.2 peer=10.213.77.1 net=ping,send,receive pings=\(options.pings) "
            + "sizes=\(sizeList) count=\(options.frames) dst=\(hostSink.text) gap-ms=1000 idle-ms=2000"
        do {
            try await createGuest(deployment, image: image, name: "nb-host", switch: internalSwitch,
                                  mac: guestMAC, arguments: hostArguments)
            _ = try await deployment.waitForConsole("nb-host", containing: "net: receiving", timeoutSeconds: 600)
        } catch {
            stop.set()
            sampler.join()
            throw error
        }
        stop.set()
        sampler.join()
        let guestToHost = try sampled.withLock { $0 }.get()
        progress("host → guest")
        let tapDrops = try SysfsCounter(path: "/sys/class/net/\(tapName)/statistics/tx_dropped")
        var hostToGuestStart = try await nicDrops(deployment, "nb-host", mac: guestMAC)
        hostToGuestStart.hostTAP = Int(clamping: try tapDrops.read())
        let sender = try PacketSocket.open(interface: tapName, promiscuous: false, virtioHeader: false)
        let hostSent = try HostFrames.send(on: sender, header: [], sizes: sizes, count: options.frames,
                                           from: NetworkBaselines.source, to: guestMAC, gap: .milliseconds(300), stop: BenchFlag())
        _ = try await deployment.waitForConsole("nb-host", containing: "net: done", timeoutSeconds: 120)
        var hostToGuestEnd = try await nicDrops(deployment, "nb-host", mac: guestMAC)
        hostToGuestEnd.hostTAP = Int(clamping: try tapDrops.read())
        let hostConsole = try await deployment.console("nb-host", lines: 200)
        try await deployment.delete("nb-host")

        progress("guest → guest across private switch \(privateSwitch)")
        try await createGuest(deployment, image: image, name: "nb-rx", switch: privateSwitch, mac: receiverMAC,
                              arguments: "mode=net ip=10.213.79.2 net=receive sizes=\(sizeList) count=\(options.frames) idle-ms=2000")
        _ = try await deployment.waitForConsole("nb-rx", containing: "net: receiving", timeoutSeconds: 600)
        let guestToGuestStart = try await nicDrops(deployment, "nb-rx", mac: receiverMAC)
        try await createGuest(deployment, image: image, name: "nb-tx", switch: privateSwitch, mac: senderMAC,
                              arguments: "mode=net ip=10.213.79.3 net=send sizes=\(sizeList) count=\(options.frames) "
                                  + "dst=\(receiverMAC.text) gap-ms=300")
        _ = try await deployment.waitForConsole("nb-rx", containing: "net: done", timeoutSeconds: 600)
        let guestToGuestEnd = try await nicDrops(deployment, "nb-rx", mac: receiverMAC)
        let receiverConsole = try await deployment.console("nb-rx", lines: 200)
        let senderConsole = try await deployment.console("nb-tx", lines: 200)
        try await deployment.delete("nb-rx")
        try await deployment.delete("nb-tx")
        return Measured(guestToHost: guestToHost, hostSendNanoseconds: hostSent.map(\.nanoseconds), hostConsole: hostConsole,
                        receiverConsole: receiverConsole, senderConsole: senderConsole,
                        hostToGuestDrops: hostToGuestEnd.since(hostToGuestStart),
                        guestToGuestDrops: guestToGuestEnd.since(guestToGuestStart))
    }

    static func removeSwitches(_ deployment: LocalDeployment) async {
        _ = try? await deployment.client.send(.DELETE, "/v1/switches/\(internalSwitch)")
        _ = try? await deployment.client.send(.DELETE, "/v1/switches/\(privateSwitch)")
    }

    // MARK: Steps

    /// A sender's own rate: frames over the nanoseconds it took.
    static func offered(_ sent: (frames: Int, nanoseconds: UInt64)?) -> Double? {
        guard let sent, sent.nanoseconds > 0 else { return nil }
        return Double(sent.frames) / (Double(sent.nanoseconds) / 1e9)
    }

    static func createSwitch(_ deployment: LocalDeployment, _ configuration: SwitchConfiguration) async throws {
        _ = try? await deployment.client.send(.DELETE, "/v1/switches/\(configuration.name)")
        _ = try await deployment.client.request(.POST, "/v1/switches", body: configuration, as: SwitchInfo.self)
    }

    /// The Embedded guest's image, built once per run (GuestBuilder hashes every input each time).
    static func guestImage(packageRoot: String) async throws -> String {
        let configuration = PartitionConfiguration(name: "image", processors: 1, memoryMiB: 128,
                                                   guest: .embedded(image: "Guest", arguments: "", imagePath: nil))
        let resolved = try await LocalDeployment.resolveImage(configuration,
                                                              configurationPath: "\(packageRoot)/Partitions/netguest.json")
        guard case .embedded(_, _, let path?) = resolved.guest else { throw NetworkBenchError.guest("the guest image was not built") }
        return path
    }

    /// Creates and starts an Embedded guest with one NIC.
    static func createGuest(_ deployment: LocalDeployment, image: String, name: String, switch switchName: String,
                            mac: MACAddress, arguments: String) async throws {
        let configuration = PartitionConfiguration(
            name: name, processors: 1, memoryMiB: 128, guest: .embedded(image: "Guest", arguments: arguments, imagePath: image),
            devices: ["heartbeat", DeviceConfiguration(kind: "nic", settings: ["switch": .string(switchName),
                                                                                "mac": .string(mac.text)])])
        _ = try await deployment.client.request(.POST, "/v1/partitions", body: configuration, as: PartitionInfo.self)
        try await deployment.perform("start", on: name)
    }

    /// The raw signalling chain's median round trip (µs), from a bench child in this run.
    static func rawChainP50(_ deployment: LocalDeployment, packageRoot: String) async throws -> Double {
        let info = try await deployment.createPartition(configurationPath: "\(packageRoot)/Partitions/bench.json",
                                                        overrideName: "nb-raw", arguments: "mode=vmbus bench=raw rtts=2000")
        try await deployment.perform("start", on: info.name)
        _ = try await deployment.waitForConsole(info.name, containing: "bench: done", timeoutSeconds: 300)
        let facts = try await deployment.info(info.name).status
        try await deployment.delete(info.name)
        return ChannelBenchmark.latency(facts, "raw-chain", BenchProtocol.minimumMessageSize, "p50") ?? 0
    }

    static func loadAverage() -> String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "").split(separator: " ").prefix(3)
            .joined(separator: " ")
    }

    /// What a bench guest printed.
    struct GuestLines {
        var sent: [Int: (frames: Int, nanoseconds: UInt64)] = [:]
        var received: [Int: FrameTally] = [:]
        var ping: (replies: Int, sent: Int, p50: Double, p99: Double) = (0, 0, 0, 0)

        init(_ lines: [String]) {
            for line in lines {
                let fields = Self.fields(line)
                if line.contains("net: send "), let size = fields["size"].flatMap(Int.init) {
                    sent[size] = (fields["frames"].flatMap(Int.init) ?? 0, fields["ns"].flatMap(UInt64.init) ?? 0)
                } else if line.contains("net: receive "), let size = fields["size"].flatMap(Int.init) {
                    var tally = FrameTally(size: size)
                    tally.frames = fields["frames"].flatMap(Int.init) ?? 0
                    tally.first = 0
                    tally.last = fields["ns"].flatMap(UInt64.init) ?? 0
                    received[size] = tally
                } else if line.contains("net: ping ") {
                    let replies = (fields["replies"] ?? "0/0").split(separator: "/").compactMap { Int($0) }
                    ping = (replies.first ?? 0, replies.last ?? 0, (fields["p50-ns"].flatMap(Double.init) ?? 0) / 1000,
                            (fields["p99-ns"].flatMap(Double.init) ?? 0) / 1000)
                }
            }
        }

        static func fields(_ line: String) -> [String: String] {
            var fields: [String: String] = [:]
            for word in line.split(separator: " ") {
                let parts = word.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
            }
            return fields
        }
    }
}
