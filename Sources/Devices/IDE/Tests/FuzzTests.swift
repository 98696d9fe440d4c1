import Glibc
import Testing
import TestSupport
@testable import IDEEmulator

@Suite("Fuzzing the port interface")
struct FuzzTests {
    /// Accesses per seed; IDE_FUZZ_STEPS runs the long form (e.g. IDE_FUZZ_STEPS=2000000).
    private static var steps: Int {
        guard let text = getenv("IDE_FUZZ_STEPS"), let steps = Int(String(cString: text)), steps > 0 else { return 3_000 }
        return steps
    }

    @Test func randomAccessesNeverTrapAndKeepTheInvariants() {
        var accesses = 0
        for seed: UInt64 in 0..<12 {
            var fuzzer = IDEChannelFuzzer(generator: SeededGenerator(seed: 0x1DE0_0000 + seed))
            do {
                try fuzzer.run(steps: Self.steps)
            } catch {
                Issue.record("seed \(seed): \(error)")
            }
            #expect(fuzzer.steps == Self.steps)
            accesses += fuzzer.storageAccesses
        }
        #expect(accesses > 12 * Self.steps / 50, "the runs reached the disk, not just the registers")
    }

    @Test func theSameSeedReplaysTheSameRun() {
        var first = IDEChannelFuzzer(generator: SeededGenerator(seed: 7))
        var second = IDEChannelFuzzer(generator: SeededGenerator(seed: 7))
        #expect(throws: Never.self) { try first.run(steps: 500) }
        #expect(throws: Never.self) { try second.run(steps: 500) }
        #expect(first.fingerprint == second.fingerprint)
    }
}
