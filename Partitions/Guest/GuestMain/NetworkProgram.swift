import GuestKit
import GuestVMBus
import HyperV
import ICProtocol
import ICVSC
import NetworkProtocol
import NetworkVSC
import VMBusProtocol

/// `mode=net`: connect to VMBus, bring up every synthetic NIC (netvsc) and the integration
/// services, run the network plan on the first NIC, then answer ARP, pings and the integration
/// services until asked to power off.
///
/// Arguments: `ip=10.0.0.2` (this guest's address), `peer=10.0.0.1`, `net=` a comma-separated
/// plan of `ping` (`pings=` echo requests to the peer), `send` (bench frames of each of `sizes=`
/// to `dst=`, `count=` per size, `gap-ms=` between sizes), `receive` (count bench frames of each
/// size until `count=` arrive or `idle-ms=` pass); `recv-kib=` the receive buffer (16 MiB, as
/// Linux), `ring-kib=` each ring (512 KiB, as Linux).
struct NetworkProgram {
    let info: BootInfo
    let clock: Clock

    init(info: BootInfo) {
        self.info = info
        clock = Clock(tscFrequencyHz: info.tscFrequencyHz)
        PageAllocator.configure(start: info.freeMemoryStart + 4096, limit: info.memorySize)
    }

    typealias NIC = NetworkVSC<GuestChannel, LocalSharedBuffer>

    func run() -> Never {
        var client = VMBusDriver(clock: clock)
        guard client.connect(), let version = client.version else { fail("net: VMBus: no version accepted") }
        print("net: VMBus \(version.major).\(version.minor)")
        guard client.requestOffers() else { fail("net: VMBus offers never completed") }
        var services: [IntegrationServiceVSC<GuestChannel>] = []
        var nics: [NIC] = []
        let ringPages = max(2, info.integer("ring-kib", default: 512) / 4)
        for offer in client.offers {
            let service: ICService? = switch offer.interfaceType {
            case ICService.heartbeat.classID: .heartbeat
            case ICService.shutdown.classID: .shutdown
            case ICService.timeSync.classID: .timeSync
            default: nil
            }
            if let service {
                guard let channel = client.open(offer, ringPages: 4) else { fail("net: cannot open relid \(offer.childRelID)") }
                services.append(IntegrationServiceVSC(service: service, channel: channel))
            } else if offer.interfaceType == GUID.network, offer.subChannelIndex == 0 {
                if let nic = bringUp(offer, &client, ringPages: ringPages) { nics.append(nic) }
            }
        }
        let openedAt = Clock.referenceTimeFromPage()?.time ?? 0
        print("net: \(nics.count) NIC(s) up at reference time \(openedAt) (\(openedAt / 10_000) ms after creation)")
        let address = IPv4Endpoint.parse(info.argument("ip") ?? "10.0.0.2") ?? 0x0A00_0002
        guard !nics.isEmpty else { serve(&services, &nics, [], &client, ringPages: ringPages, address: address) }
        var endpoints = nics.indices.map { IPv4Endpoint(macAddress: nics[$0].macAddress, address: address &+ UInt32($0) &* 256) }
        for step in (info.argument("net") ?? "").split(separator: ",") {
            switch step {
            case "ping": ping(&nics[0], &endpoints[0])
            case "send": send(&nics[0])
            case "receive": receive(&nics[0], &endpoints[0])
            default: print("net: unknown step \(step)")
            }
        }
        print("net: done")
        serve(&services, &nics, endpoints, &client, ringPages: ringPages, address: address)
    }

    /// Opens the NIC's channel, shares its buffers and brings it up.
    func bringUp(_ offer: OfferChannel, _ client: inout VMBusDriver, ringPages: Int) -> NIC? {
        let receivePages = max(64, info.integer("recv-kib", default: 16 << 10) / 4)
        let sendPages = 255  // Linux's 170 sections of 6144 bytes
        // Jumbo frames in flight: with 16, one sender managed about 77,000 9014-byte frames a second
        // to another guest, one batch per round trip (Docs/benchmarks.md, "Jumbo frames and earlier
        // completions").
        let largePages = 64 * NIC.largeSlotSize / 4096
        guard let channel = client.open(offer, ringPages: ringPages),
              let receiveAddress = PageAllocator.allocate(pages: receivePages),
              let sendAddress = PageAllocator.allocate(pages: sendPages),
              let largeAddress = PageAllocator.allocate(pages: largePages),
              let receiveGPADL = client.createGPADL(channel: offer.childRelID, address: receiveAddress, pages: receivePages),
              let sendGPADL = client.createGPADL(channel: offer.childRelID, address: sendAddress, pages: sendPages) else {
            print("net: cannot open NIC relid \(offer.childRelID) or share its buffers")
            return nil
        }
        var nic = NIC(channel: channel, receive: LocalSharedBuffer(address: receiveAddress, pages: receivePages),
                      receiveGPADL: receiveGPADL, send: LocalSharedBuffer(address: sendAddress, pages: sendPages),
                      sendGPADL: sendGPADL, large: LocalSharedBuffer(address: largeAddress, pages: largePages))
        do throws(NetworkVSCError) {
            try nic.start()
        } catch {
            print("net: NIC relid \(offer.childRelID) did not come up: \(describe(error))")
            return nil
        }
        let nvsp = nic.version.map { "\($0.rawValue >> 16).\($0.rawValue & 0xFFFF)" } ?? "none"
        print("net: NIC \(text(nic.macAddress)) up: NVSP \(nvsp), MTU \(nic.mtu), link \(nic.linkConnected ? "up" : "down")")
        return nic
    }

    func ping(_ nic: inout NIC, _ endpoint: inout IPv4Endpoint) {
        guard let peer = IPv4Endpoint.parse(info.argument("peer") ?? "10.0.0.1") else { return print("net: ping: no peer") }
        let count = info.integer("pings", default: 20)
        let size = info.integer("ping-size", default: 56)
        var samples = nic.ping(peer, count: count, endpoint: &endpoint, dataSize: size)
        samples.sort()
        let p50 = samples.isEmpty ? 0 : samples[samples.count / 2]
        let p99 = samples.isEmpty ? 0 : samples[min(samples.count - 1, samples.count * 99 / 100)]
        print("net: ping peer=\(info.argument("peer") ?? "") replies=\(samples.count)/\(count) p50-ns=\(p50) p99-ns=\(p99)")
    }

    func send(_ nic: inout NIC) {
        guard let destination = info.argument("dst").flatMap(parseMAC) else { return print("net: send: no dst=") }
        let count = info.integer("count", default: 100_000)
        for size in sizes(nic) {
            let (sent, nanoseconds) = nic.sendBench(size: size, count: count, to: destination)
            print("net: send size=\(size) frames=\(sent) ns=\(nanoseconds)")
            // The whole gap, however often the channel interrupts: the host cuts its count of
            // this guest's frames into one burst per size at the quiet between them.
            clock.sleep(nanoseconds: UInt64(info.integer("gap-ms", default: 300)) * 1_000_000)
        }
    }

    func receive(_ nic: inout NIC, _ endpoint: inout IPv4Endpoint) {
        let count = info.integer("count", default: 100_000)
        let idle = UInt64(info.integer("idle-ms", default: 2000)) * 1_000_000
        print("net: receiving")
        let receipts = nic.receiveBench(sizes: sizes(nic), count: count, idleNanoseconds: idle,
                                        timeoutNanoseconds: 120_000_000_000, endpoint: &endpoint)
        for receipt in receipts {
            let nanoseconds = receipt.frames > 1 ? clock.nanoseconds(from: receipt.first, to: receipt.last) : 0
            print("net: receive size=\(receipt.size) frames=\(receipt.frames) ns=\(nanoseconds) gaps=\(receipt.gaps)")
        }
    }

    /// The `sizes=` list, keeping the sizes this NIC can carry.
    func sizes(_ nic: NIC) -> [Int] {
        var sizes: [Int] = []
        for word in (info.argument("sizes") ?? "64,1514").split(separator: ",") {
            let size = decimal(word)
            if let size, size >= BenchFrame.minimumSize, size <= nic.mtu + 14 { sizes.append(size) }
            else { print("net: dropping size \(word)") }
        }
        return sizes
    }

    /// Answers ARP, pings and the integration services until a shutdown request; brings up NICs
    /// the host hot-adds (their address is `address` + 256 × their index) and lets go of those it
    /// rescinds.
    func serve(_ services: inout [IntegrationServiceVSC<GuestChannel>], _ nics: inout [NIC], _ endpoints: [IPv4Endpoint],
               _ client: inout VMBusDriver, ringPages: Int, address: UInt32) -> Never {
        var endpoints = endpoints
        var lastServices: UInt64 = 0
        var offersSeen = client.offers.count
        while true {
            client.pollMessages()
            while offersSeen < client.offers.count {
                let offer = client.offers[offersSeen]
                offersSeen += 1
                guard offer.interfaceType == GUID.network, offer.subChannelIndex == 0,
                      var nic = bringUp(offer, &client, ringPages: ringPages) else { continue }
                print("net: NIC \(text(nic.macAddress)) hot-added (relid \(offer.childRelID))")
                nic.flush()
                nics.append(nic)
                endpoints.append(IPv4Endpoint(macAddress: nic.macAddress, address: address &+ UInt32(endpoints.count) &* 256))
            }
            while let relID = client.takeRescinded() {
                if let index = nics.firstIndex(where: { $0.channel.relID == relID }) {
                    print("net: NIC \(text(nics[index].macAddress)) removed (relid \(relID))")
                    nics.remove(at: index)
                    if index < endpoints.count { endpoints.remove(at: index) }
                }
                _ = client.releaseRelID(relID)
            }
            var busy = false
            for index in nics.indices where index < endpoints.count {
                if nics[index].serve(&endpoints[index]) { busy = true }
            }
            let now = CPU.timestamp()
            if clock.nanoseconds(from: lastServices, to: now) > 50_000_000 {
                lastServices = now
                for index in services.indices where services[index].poll() == .shutdown {
                    print("net: the host asked for a shutdown; powering off")
                    CPU.out8(PlatformPorts.power, PowerCommand.powerOff)
                }
            }
            if !busy { CPU.sleep(nanoseconds: nics.isEmpty ? 100_000_000 : 100_000) }
        }
    }

    func describe(_ error: NetworkVSCError) -> String {
        switch error {
        case .timedOut(let what): "no answer to \(what)"
        case .refused(let what): "refused \(what)"
        case .ringFull: "ring full"
        }
    }

    func text(_ mac: MACAddress) -> String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var bytes: [UInt8] = []
        for (index, byte) in mac.bytes.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ":")) }
            bytes.append(digits[Int(byte >> 4)])
            bytes.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    func parseMAC(_ text: String) -> MACAddress? {
        let digits = Array(text.utf8).filter { $0 != UInt8(ascii: ":") }
        return MACAddress(hexDigits: digits)
    }

    func decimal(_ word: Substring) -> Int? {
        guard !word.isEmpty else { return nil }
        var value = 0
        for byte in word.utf8 {
            guard byte >= 0x30 && byte <= 0x39, value < 1 << 40 else { return nil }
            value = value * 10 + Int(byte - 0x30)
        }
        return value
    }

    func fail(_ message: String) -> Never {
        print(message)
        CPU.park()
    }
}
