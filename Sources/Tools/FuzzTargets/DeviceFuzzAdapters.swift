import FuzzSupport
import IDEEmulator
import NetworkVSP
import RootScheduler
import StorageVSP
import VirtualSwitch

/// The findings of a fuzzer that reports the promises a whole session broke, one line each (the
/// first 20, against the session's last case).
private func sessionFindings(_ violations: [String], cases: Int, progress: (Int) -> Void) -> [FuzzFinding] {
    progress(cases)
    return violations.prefix(20).map { FuzzFinding(caseIndex: cases - 1, message: $0) }
}

/// The network VSP's own fuzzer (`NetworkVSPFuzzer`: NVSP and RNDIS traffic, valid and
/// mutated, with receives, completions, link changes and re-opens); a case is one of its steps.
enum NetworkFuzzTarget: FuzzTarget {
    static let name = "network"
    static let summary = "the network VSP (NVSP, RNDIS) with NetworkVSPFuzzer's generated and mutated traffic"
    static let sessionLength = 5000

    static func runSession(seed: UInt64, cases: Int, progress: (Int) -> Void) -> [FuzzFinding] {
        sessionFindings(NetworkVSPFuzzer.run(seed: seed, iterations: cases).violations, cases: cases, progress: progress)
    }
}

/// The virtual switch's offload work on guests' frames (`SoftwareOffloadFuzzer`: segmentation,
/// checksums and VLAN tags for a guest and for a TAP); a case is one frame.
enum OffloadFuzzTarget: FuzzTarget {
    static let name = "offload"
    static let summary = "the virtual switch's software offloads (TCP segmentation, checksums, VLAN tags) on guests' frames"
    static let sessionLength = 2000

    static func runSession(seed: UInt64, cases: Int, progress: (Int) -> Void) -> [FuzzFinding] {
        sessionFindings(SoftwareOffloadFuzzer.run(seed: seed, iterations: cases), cases: cases, progress: progress)
    }
}

/// The storage VSP's own fuzzer (`StorageFuzzHarness`: initialization, SRBs with generated
/// CDBs and page lists, mutated packets, requests completed with random results, over three
/// disks); a case is one packet.
enum StorageFuzzTarget: FuzzTarget {
    static let name = "storage"
    static let summary = "the storage VSP (storvsp: vstor packets, SRBs, SCSI commands) with StorageFuzzHarness's traffic"
    static let sessionLength = 20_000

    static func runSession(seed: UInt64, cases: Int, progress: (Int) -> Void) -> [FuzzFinding] {
        sessionFindings(StorageFuzzHarness.run(seed: seed, iterations: cases).failures, cases: cases, progress: progress)
    }
}

/// The IDE channel's own fuzzer (`IDEChannelFuzzer`: port accesses of a guest that knows the
/// registers, over a small disk that fails some accesses); a case is one access.
enum IDEFuzzTarget: FuzzTarget {
    static let name = "ide"
    static let summary = "the IDE channel (emulated ATA) with IDEChannelFuzzer's port accesses"
    static let sessionLength = 20_000

    static func runSession(seed: UInt64, cases: Int, progress: (Int) -> Void) -> [FuzzFinding] {
        var fuzzer = IDEChannelFuzzer(generator: FuzzRandom(seed: seed))
        do throws(IDEInvariantViolation) {
            try fuzzer.run(steps: cases)
        } catch {
            return [FuzzFinding(caseIndex: error.step, message: error.message)]
        }
        progress(cases)
        return []
    }
}

/// The control protocol as the root sees it (`ParentLinkFuzzer`); a case is one message.
enum ControlFuzzTarget: FuzzTarget {
    static let name = "control"
    static let summary = "the root's end of the control protocol (ParentLink) against a hostile parent"
    static let sessionLength = 20_000

    static func runSession(seed: UInt64, cases: Int, progress: (Int) -> Void) -> [FuzzFinding] {
        ParentLinkFuzzer.runSession(seed: seed, cases: cases, progress: progress)
    }
}
