import Scheduling
import TestSupport
import Testing

func controls(reserve: Int = 0, limit: Int = 100, weight: Int = 100) -> CPUControls {
    do {
        return try CPUControls(reserve: reserve, limit: limit, weight: weight)
    } catch {
        Issue.record("bad test controls: \(error)")
        return .default
    }
}

func demand(_ name: String, _ processors: Int = 1, reserve: Int = 0, limit: Int = 100, weight: Int = 100,
            pinned: [Int]? = nil) -> PartitionDemand {
    PartitionDemand(name: name, processorCount: processors,
                    controls: controls(reserve: reserve, limit: limit, weight: weight), pinnedProcessors: pinned)
}

/// Whether each group's weight share is at least its reserve's share of the processors its
/// component shares: value_i / Σ value_j ≥ R_i / (100 × processors), in integers.
func reservesHold(_ plan: SchedulingPlan, _ demands: [PartitionDemand], processors: Int,
                  value: (GroupParameters) -> Int) -> Bool {
    let groups = demands.compactMap { plan.partitions[$0.name] }
    let total = groups.reduce(0) { $0 + value($1) }
    return groups.allSatisfy { value($0) * 100 * processors >= $0.reservedHundredths * total }
}

@Suite("Scheduling policy: weights and limits")
struct WeightAndLimitTests {
    @Test func withoutReservesWeightsPassStraightThrough() throws {
        let plan = try SchedulingPolicy.plan(
            for: [demand("alpha", weight: 100), demand("beta", weight: 300), demand("gamma", weight: 1)],
            on: HostProcessors(count: 2))
        #expect(plan.partitions["alpha"]?.weight == 100)
        #expect(plan.partitions["beta"]?.weight == 300)
        #expect(plan.partitions["gamma"]?.weight == 1)
        // v1: weight × 1024 / 100, so the default weight is the kernel's default 1024 shares.
        #expect(plan.partitions["alpha"]?.shares == 1024)
        #expect(plan.partitions["beta"]?.shares == 3072)
        #expect(plan.partitions["gamma"]?.shares == 10)
        #expect(plan.parent == nil)
    }

    @Test func weightsOneToThreeGiveAQuarterAndThreeQuarters() throws {
        let plan = try SchedulingPolicy.plan(
            for: [demand("a", weight: 100), demand("b", weight: 300)], on: HostProcessors(count: 1))
        let a = try #require(plan.partitions["a"])
        let b = try #require(plan.partitions["b"])
        #expect(a.shares * 3 == b.shares && a.weight * 3 == b.weight)
    }

    @Test func noLimitMeansNoQuota() throws {
        let plan = try SchedulingPolicy.plan(for: [demand("alpha", 4)], on: HostProcessors(count: 2))
        #expect(plan.partitions["alpha"]?.quota == nil)
    }

    @Test(arguments: [(1, 50, 50_000), (2, 50, 100_000), (4, 25, 100_000), (3, 1, 3_000), (2, 99, 198_000)])
    func limitBecomesQuotaOfLimitTimesProcessorsPerPeriod(processors: Int, limit: Int, quota: Int) throws {
        let plan = try SchedulingPolicy.plan(for: [demand("alpha", processors, limit: limit)], on: HostProcessors(count: 2))
        #expect(plan.partitions["alpha"]?.quota == CPUQuota(quotaMicroseconds: quota, periodMicroseconds: 100_000))
    }

    @Test func unpinnedPartitionsAreNotConfinedWhenTheParentIsNotKeptApart() throws {
        let plan = try SchedulingPolicy.plan(for: [demand("alpha", 2)], on: HostProcessors(count: 2))
        #expect(plan.partitions["alpha"]?.processors == nil)
    }
}

@Suite("Scheduling policy: reserves")
struct ReserveTests {
    @Test func aReservedPartitionOutweighsAHeavierUnreservedOne() throws {
        // alpha: 1 VP at 100% of 2 processors must get half the host however light its weight.
        let demands = [demand("alpha", reserve: 100, weight: 1), demand("beta", 2, weight: 10_000)]
        let plan = try SchedulingPolicy.plan(for: demands, on: HostProcessors(count: 2))
        let alpha = try #require(plan.partitions["alpha"])
        let beta = try #require(plan.partitions["beta"])
        #expect(alpha.reservedHundredths == 100)
        #expect(alpha.weight * 2 >= alpha.weight + beta.weight)
        #expect(alpha.shares * 2 >= alpha.shares + beta.shares)
    }

    @Test func reservesHoldWhateverTheOtherWeights() throws {
        var random = SeededGenerator(seed: 0x5C4E_D01E)
        for _ in 0..<500 {
            let processors = Int.random(in: 1...16, using: &random)
            var capacity = 100 * processors
            var demands: [PartitionDemand] = []
            for index in 0..<Int.random(in: 1...8, using: &random) {
                let vps = Int.random(in: 1...4, using: &random)
                var reserve = Int.random(in: 0...100, using: &random)
                if reserve * vps > capacity { reserve = capacity / vps }
                capacity -= reserve * vps
                demands.append(demand("p\(index)", vps, reserve: reserve, limit: max(reserve, 1),
                                      weight: Int.random(in: 1...10_000, using: &random)))
            }
            let plan = try SchedulingPolicy.plan(for: demands, on: HostProcessors(count: processors))
            // Exact whenever some capacity is left unreserved for the minimum weights.
            guard capacity > 0 else { continue }
            #expect(reservesHold(plan, demands, processors: processors, value: \.weight), "\(demands)")
            #expect(reservesHold(plan, demands, processors: processors, value: \.shares), "\(demands)")
        }
    }

    @Test func reservesFillingTheHostExactlyAreAccepted() throws {
        let demands = [demand("alpha", reserve: 100), demand("beta", 2, reserve: 50), demand("idle")]
        let plan = try SchedulingPolicy.plan(for: demands, on: HostProcessors(count: 2))
        let alpha = try #require(plan.partitions["alpha"])
        let beta = try #require(plan.partitions["beta"])
        let idle = try #require(plan.partitions["idle"])
        // The unreserved partition keeps the kernel's minimum; the others split the rest evenly.
        #expect(idle.weight == 1 && idle.shares == 2)
        #expect(alpha.weight == beta.weight && alpha.shares == beta.shares)
    }

    @Test func reservesBeyondTheHostAreRefusedWithASentence() {
        let demands = [demand("alpha", 2, reserve: 75), demand("beta", reserve: 60), demand("gamma")]
        #expect(throws: SchedulingRefusal.reservesExceedCapacity(
            partitions: ["alpha", "beta"], neededHundredths: 210, processors: [0, 1])) {
            try SchedulingPolicy.plan(for: demands, on: HostProcessors(count: 2))
        }
        let sentence = SchedulingRefusal.reservesExceedCapacity(
            partitions: ["alpha", "beta"], neededHundredths: 210, processors: [0, 1]).description
        #expect(sentence == "The processor reserves of partitions alpha and beta need 2.1 host processors, but they "
            + "may run only on host processors 0-1 (2 in all), so not every reserve could be met under contention.")
    }

    @Test func reservesPinnedToOneProcessorMustFitOnIt() {
        // 1.1 processors reserved on processor 1, although the host has two.
        let demands = [demand("alpha", reserve: 80, pinned: [1]), demand("beta", reserve: 30, pinned: [1]),
                       demand("gamma", reserve: 50)]
        #expect(throws: SchedulingRefusal.reservesExceedCapacity(
            partitions: ["alpha", "beta"], neededHundredths: 110, processors: [1])) {
            try SchedulingPolicy.plan(for: demands, on: HostProcessors(count: 2))
        }
    }

    @Test func pinnedAndUnpinnedReservesAreMatchedAcrossProcessors() throws {
        // alpha takes processor 0 whole; beta's one processor's worth fits on processor 1.
        _ = try SchedulingPolicy.plan(
            for: [demand("alpha", reserve: 100, pinned: [0]), demand("beta", 2, reserve: 50)], on: HostProcessors(count: 2))
        #expect(throws: SchedulingRefusal.reservesExceedCapacity(
            partitions: ["alpha", "beta"], neededHundredths: 220, processors: [0, 1])) {
            try SchedulingPolicy.plan(
                for: [demand("alpha", reserve: 100, pinned: [0]), demand("beta", 2, reserve: 60)], on: HostProcessors(count: 2))
        }
    }

    @Test func aReserveOnMoreProcessorsThanItIsPinnedToIsRefused() {
        #expect(throws: SchedulingRefusal.reservesExceedCapacity(
            partitions: ["alpha"], neededHundredths: 150, processors: [3])) {
            try SchedulingPolicy.plan(for: [demand("alpha", 3, reserve: 50, pinned: [3])], on: HostProcessors(count: 4))
        }
    }

    @Test func groupsOnDisjointProcessorsDoNotShareWeights() throws {
        let plan = try SchedulingPolicy.plan(
            for: [demand("alpha", reserve: 50, weight: 100, pinned: [0]), demand("beta", weight: 300, pinned: [1])],
            on: HostProcessors(count: 2))
        // Each is alone on its processor: alpha's reserve does not reweigh beta.
        #expect(plan.partitions["beta"]?.weight == 300 && plan.partitions["beta"]?.shares == 3072)
        #expect(plan.partitions["alpha"]?.processors == [0])
        #expect(plan.partitions["beta"]?.processors == [1])
    }
}

@Suite("Scheduling policy: the parent kept apart, and malformed demands")
struct ParentAndRefusalTests {
    @Test func keepingTheParentApartConfinesEveryPartitionToTheOtherProcessors() throws {
        let host = HostProcessors(processors: [0, 1, 2, 3], parentProcessors: [0])
        let plan = try SchedulingPolicy.plan(for: [demand("alpha", 2), demand("beta", pinned: [3])], on: host)
        #expect(plan.partitions["alpha"]?.processors == [1, 2, 3])
        #expect(plan.partitions["beta"]?.processors == [3])
        #expect(plan.parent == GroupParameters(shares: 1024, weight: 100, processors: [0]))
    }

    @Test func theParentsProcessorsDoNotCountForReserves() {
        let host = HostProcessors(processors: [0, 1], parentProcessors: [0])
        #expect(throws: SchedulingRefusal.reservesExceedCapacity(
            partitions: ["alpha", "beta"], neededHundredths: 120, processors: [1])) {
            try SchedulingPolicy.plan(for: [demand("alpha", reserve: 60), demand("beta", reserve: 60)], on: host)
        }
    }

    @Test func aPartitionPinnedToTheParentsProcessorsIsRefused() {
        let host = HostProcessors(processors: [0, 1], parentProcessors: [0])
        #expect(throws: SchedulingRefusal.partition(
            name: "alpha", reason: "it is pinned to processors 0, which are kept for the parent partition.")) {
            try SchedulingPolicy.plan(for: [demand("alpha", pinned: [0, 1])], on: host)
        }
    }

    @Test func theParentCannotTakeEveryProcessor() {
        #expect(throws: SchedulingRefusal.host(
            "Keeping the parent partition on processors 0-1 leaves no processor for virtual processors.")) {
            try SchedulingPolicy.plan(for: [], on: HostProcessors(processors: [0, 1], parentProcessors: [1, 0]))
        }
        #expect(throws: SchedulingRefusal.host(
            "The parent partition cannot be kept on processors 5: the root may use only 0-1.")) {
            try SchedulingPolicy.plan(for: [], on: HostProcessors(processors: [0, 1], parentProcessors: [5]))
        }
    }

    @Test func malformedDemandsAreRefused() {
        let host = HostProcessors(count: 2)
        #expect(throws: SchedulingRefusal.partition(name: "alpha", reason: "it is listed twice.")) {
            try SchedulingPolicy.plan(for: [demand("alpha"), demand("alpha")], on: host)
        }
        #expect(throws: SchedulingRefusal.partition(
            name: "alpha", reason: "it must have between 1 and 4096 virtual processors, not 0.")) {
            try SchedulingPolicy.plan(for: [demand("alpha", 0)], on: host)
        }
        #expect(throws: SchedulingRefusal.partition(
            name: "alpha", reason: "it is pinned to processors 2-3, which the root may not use (it may use 0-1).")) {
            try SchedulingPolicy.plan(for: [demand("alpha", pinned: [1, 2, 3])], on: host)
        }
        #expect(throws: SchedulingRefusal.partition(name: "alpha", reason: "it is pinned to an empty set of processors.")) {
            try SchedulingPolicy.plan(for: [demand("alpha", pinned: [])], on: host)
        }
        #expect(throws: SchedulingRefusal.host("The host has no processors the root may use.")) {
            try SchedulingPolicy.plan(for: [], on: HostProcessors(count: 0))
        }
    }
}
