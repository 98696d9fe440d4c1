import FuzzSupport
import FuzzTargets
import Testing

/// The short form of every fuzz target (`hv fuzz TARGET --cases N` is the long one): a few
/// thousand seeded cases each, which must break no promise and trap nowhere.
@Suite("Fuzz targets, short form")
struct FuzzTests {
    static let targets = FuzzRegistry.targets.map { FuzzTargetCase(target: $0) }

    struct FuzzTargetCase: Sendable, CustomTestStringConvertible {
        let target: any FuzzTarget.Type
        var testDescription: String { target.name }
    }

    @Test(arguments: targets)
    func aShortRunBreaksNoPromise(_ test: FuzzTargetCase) {
        let progress = FuzzRunner.Progress()
        let report = FuzzRunner.run(test.target, seed: 0x5EED, cases: 3000, progress: progress)
        #expect(report.cases == 3000)
        #expect(progress.completed.load(ordering: .relaxed) == 3000)
        #expect(report.findings.isEmpty, "\(report.findings)")
    }

    /// A run replays from its seed: the same cases give the same mutations.
    @Test func mutationsReplayFromTheirSeed() {
        func run(_ seed: UInt64) -> [[UInt8]] {
            var random = FuzzRandom(seed: seed)
            return (0..<200).map { index in Mutator.mutated(Array(0..<UInt8(index % 64)), random: &random) }
        }
        #expect(run(7) == run(7))
        #expect(run(7) != run(8))
        #expect(FuzzRandom.derive(1, 2) == FuzzRandom.derive(1, 2) && FuzzRandom.derive(1, 2) != FuzzRandom.derive(1, 3))
    }

    /// Every target has a distinct name, so `hv fuzz NAME` picks one.
    @Test func targetNamesAreDistinct() {
        let names = FuzzRegistry.targets.map { $0.name }
        #expect(Set(names).count == names.count)
        #expect(FuzzRegistry.target(named: "vmbus-server") != nil)
    }
}
