import BenchProtocol
import BenchVSC
import GuestKit
import GuestVMBus
import HyperV
import ICVSC
import ICProtocol
import VMBusProtocol

/// `mode=vmbus`: connect to VMBus, open every channel this guest has a driver for, run the
/// bench plan if one was given, then serve the integration components until asked to power off.
struct VMBusProgram {
    let info: BootInfo
    let clock: Clock

    init(info: BootInfo) {
        self.info = info
        clock = Clock(tscFrequencyHz: info.tscFrequencyHz)
        PageAllocator.configure(start: info.freeMemoryStart + 4096, limit: info.memorySize)
    }

    func run() -> Never {
        var client = VMBusDriver(clock: clock)
        guard client.connect(), let version = client.version else { fail("vmbus: no version accepted") }
        print("vmbus: version \(version.major).\(version.minor)")
        guard client.requestOffers() else { fail("vmbus: offers never completed") }
        print("vmbus: \(client.offers.count) offers")
        var services: [IntegrationServiceVSC<GuestChannel>] = []
        var bench: BenchVSC<GuestChannel>?
        let ringPages = max(2, info.integer("ring-kib", default: 512) / 4)
        for offer in client.offers {
            let service: ICService? = switch offer.interfaceType {
            case ICService.heartbeat.classID: .heartbeat
            case ICService.shutdown.classID: .shutdown
            case ICService.timeSync.classID: .timeSync
            default: nil
            }
            if let service {
                guard let channel = client.open(offer, ringPages: 4) else { fail("vmbus: cannot open relid \(offer.childRelID)") }
                services.append(IntegrationServiceVSC(service: service, channel: channel))
                print("vmbus: opened \(name(of: service)) (relid \(offer.childRelID))")
            } else if offer.interfaceType == BenchProtocol.interfaceType {
                guard let channel = client.open(offer, ringPages: ringPages) else { fail("vmbus: cannot open the bench channel") }
                bench = BenchVSC(channel: channel)
                print("vmbus: opened bench (relid \(offer.childRelID), \(ringPages * 4) KiB rings)")
            }
        }
        let openedAt = Clock.referenceTimeFromPage()?.time ?? 0
        print("vmbus: channels open at reference time \(openedAt) (\(openedAt / 10_000) ms after the partition was created)")
        if info.argument("mode") == "scribble", var channel = bench?.channel {
            scribble(&channel, &client)
        }
        if var bench, info.argument("bench") == "soak" {
            soak(&bench, &services)
        }
        if var bench, let plan = info.argument("bench") {
            let sizes = messageSizes(info.argument("sizes") ?? "64,4096", largest: bench.largestMessageSize)
            bench.run(plan: plan, sizes: sizes,
                      bytes: info.integer("bytes", default: 16 << 20), roundTrips: info.integer("rtts", default: 1000),
                      verify: info.integer("verify", default: 0) != 0, repetitions: info.integer("repeat", default: 1))
            print("bench: done")
        }
        serve(&services)
    }

    /// Answers integration-component requests until the host asks for a power-off.
    func serve(_ services: inout [IntegrationServiceVSC<GuestChannel>]) -> Never {
        var announced = false
        while true {
            for index in services.indices where services[index].poll() == .shutdown {
                print("vmbus: the host asked for a shutdown; powering off")
                CPU.out8(PlatformPorts.power, PowerCommand.powerOff)
            }
            if !announced && services.allSatisfy({ $0.negotiated != nil }) && !services.isEmpty {
                let versions = services.map { "\(name(of: $0.service)) \($0.negotiated!.major).\($0.negotiated!.minor)" }
                print("vmbus: integration services negotiated: " + versions.joined(separator: ", "))
                announced = true
            }
            CPU.sleep(nanoseconds: 100_000_000)
        }
    }

    /// `mode=scribble`: corrupt the bench channel's guest→host ring and signal the host, which
    /// must close this channel (and only this one).
    func scribble(_ channel: inout GuestChannel, _ client: inout VMBusDriver) {
        print("scribble: corrupting the write index of relid \(channel.relID)")
        channel.writer.memory.storeControl(.writeIndex, 0xFFFF_FFF8, ordering: .sequentiallyConsistent)
        channel.signalHost()
        if let relID = client.waitForRescind(timeoutNanoseconds: 5_000_000_000) {
            print("scribble: the host rescinded relid \(relID)")
            _ = client.releaseRelID(relID)
        } else {
            print("scribble: no rescind arrived")
        }
    }

    func name(of service: ICService) -> String {
        switch service.messageType {
        case .heartbeat: "heartbeat"
        case .shutdown: "shutdown"
        case .timeSync: "timesync"
        default: "ic"
        }
    }

    /// The comma-separated `sizes=` list, keeping only sizes a bench message can have on the
    /// bench rings (`BenchProtocol.minimumMessageSize` through `largest`); prints a line for
    /// each word it drops.
    func messageSizes(_ text: String, largest: Int) -> [Int] {
        var sizes: [Int] = []
        for word in text.split(separator: ",") {
            if let size = decimal(word), size >= BenchProtocol.minimumMessageSize, size <= largest {
                sizes.append(size)
            } else {
                print("bench: dropping size \(word): a message is \(BenchProtocol.minimumMessageSize) to \(largest) bytes on these rings")
            }
        }
        return sizes
    }

    /// A decimal number (saturating at `Int.max`), or `nil` if `word` is not all digits.
    func decimal(_ word: Substring) -> Int? {
        guard !word.isEmpty else { return nil }
        var value = 0
        for byte in word.utf8 {
            guard byte >= 0x30 && byte <= 0x39 else { return nil }
            let digit = Int(byte - 0x30)
            value = value > (Int.max - digit) / 10 ? Int.max : value * 10 + digit
        }
        return value
    }

    func fail(_ message: String) -> Never {
        print(message)
        CPU.park()
    }
}
