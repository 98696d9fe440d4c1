import BenchVSC
import GuestKit
import GuestVMBus
import HyperV
import ICVSC

extension VMBusProgram {
    /// `bench=soak`: pings on the bench channel without end while the integration services are
    /// answered (`hv bench soak`, Docs/benchmarks.md). Prints its counts every `report` seconds
    /// (default 5) as "soak: pings=… pongs=… lost=… duplicates=…", and powers off when the host
    /// asks through the shutdown service.
    func soak(_ bench: inout BenchVSC<GuestChannel>, _ services: inout [IntegrationServiceVSC<GuestChannel>]) -> Never {
        var counts = BenchVSC<GuestChannel>.SoakCounts()
        let timeout = UInt64(info.integer("soak-timeout-ms", default: 30_000)) * 1_000_000
        let pause = UInt64(info.integer("soak-pause-us", default: 1000)) * 1000
        let reportEvery = clock.ticks(nanoseconds: UInt64(info.integer("report", default: 5)) * 1_000_000_000)
        var nextReport = CPU.timestamp() &+ reportEvery
        var sequence: UInt32 = 0
        print("soak: started")
        while true {
            bench.soakPing(sequence: sequence, timeoutNanoseconds: timeout, counts: &counts) {
                // Woken by the pong's interrupt, or a short timer in case it came before the halt.
                CPU.sleep(nanoseconds: 2_000_000)
            }
            sequence &+= 1
            for index in services.indices where services[index].poll() == .shutdown {
                print("soak: pings=\(counts.pings) pongs=\(counts.pongs) lost=\(counts.lost) duplicates=\(counts.duplicates) final")
                print("vmbus: the host asked for a shutdown; powering off")
                CPU.out8(PlatformPorts.power, PowerCommand.powerOff)
            }
            if CPU.timestamp() >= nextReport {
                print("soak: pings=\(counts.pings) pongs=\(counts.pongs) lost=\(counts.lost) duplicates=\(counts.duplicates)")
                nextReport = CPU.timestamp() &+ reportEvery
            }
            if pause > 0 { CPU.sleep(nanoseconds: pause) }
        }
    }
}
