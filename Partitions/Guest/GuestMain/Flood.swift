import GuestKit
import HyperV

/// `mode=flood`: a child that floods the parent through the root, to show it cannot starve
/// its neighbours (`hv bench neighbours`, Docs/benchmarks.md). `flood=com1` writes COM1's
/// transmit register without waiting for the UART (every write is an exit the root forwards
/// to the parent); `flood=echo` posts echo requests as fast as the root takes them and
/// throws the answers away; `flood=spin` only keeps its processor busy, the share of the
/// machine a neighbour takes without asking anything of the parent.
struct Flood {
    let info: BootInfo

    func run() -> Never {
        let kind = info.argument("flood") ?? "com1"
        print("flood: \(kind)")
        let synic = SynICClient(vp: 0)
        var payload = [UInt8](repeating: 0x46, count: 64)
        payload[DiagnosticEcho.replySINTOffset] = 5
        while true {
            if kind == "spin" {
                CPU.relax()
            } else if kind == "echo" {
                _ = Hypercall.postMessage(connection: DiagnosticEcho.messageConnection.rawValue,
                                          type: DiagnosticEcho.messageType.rawValue, payload: payload)
                while synic.receive(sint: 5) != nil {}
            } else {
                for _ in 0..<64 { CPU.out8(0x3F8, 0x46) }
            }
        }
    }
}
