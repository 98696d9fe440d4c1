import GuestKit
import HyperV

/// Entry from entry.S at CPL3 on every processor.
@_cdecl("guest_main")
public func guestMain(_ bootInfoAddress: UInt64, _ vp: UInt64) -> Never {
    guard vp == 0 else {
        if Spinner.requested(bootInfoAddress: bootInfoAddress) { Spinner.spinForever() }
        CPU.park()
    }
    guard let info = BootInfo(address: bootInfoAddress) else {
        print("guest: no boot information")
        CPU.park()
    }
    switch info.argument("mode") ?? "probe" {
    case "crash":
        print("guest: triple-faulting on purpose")
        CPU.crash()
    case "trap":
        // An Embedded Swift trap is a `ud2` that no service stub owns: a fault, not a service.
        print("guest: trapping on purpose")
        // The index comes from the arguments, so the compiler cannot see the trap coming.
        var values = [UInt8](repeating: 0, count: 1)
        values[Int(info.argument("index").flatMap { UInt32($0) } ?? 7)] = 1
        print("guest: FAIL the trap returned")
        CPU.park()
    case "idle":
        print("guest: idle")
        CPU.park()
    case "serial":
        // As Linux's 8250 console does: wait for THRE in LSR, then write THR.
        for byte in "hello from COM1\n".utf8 {
            while CPU.in8(0x3FD) & 0x20 == 0 { CPU.relax() }
            CPU.out8(0x3F8, byte)
        }
        print("serial: done")
        CPU.park()
    case "spin":
        Spinner(info: info).run()
    case "selftest":
        RuntimeSelfTest(info: info).run()
    case "vmbus", "scribble":
        VMBusProgram(info: info).run()
    case "storage", "storage-flush", "storage-bench":
        StorageProgram(info: info).run(info.argument("mode") ?? "storage")
    case "net":
        NetworkProgram(info: info).run()
    case "flood":
        Flood(info: info).run()
    default:
        Probe(info: info).run()
    }
}
