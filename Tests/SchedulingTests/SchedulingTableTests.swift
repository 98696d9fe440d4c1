import Scheduling
import Testing

@Suite("Scheduling table: recomputation")
struct SchedulingTableTests {
    @Test func addingAnUnreservedPartitionChangesOnlyItsOwnGroup() throws {
        var table = try SchedulingTable(host: HostProcessors(count: 2))
        let first = try table.set(demand("alpha"))
        #expect(first.changed.keys.sorted() == ["alpha"] && first.removed.isEmpty && first.parent == .unchanged)
        let second = try table.set(demand("beta", weight: 300))
        #expect(second.changed == ["beta": GroupParameters(shares: 3072, weight: 300)])
    }

    @Test func aNewReserveReweighsItsWholeComponent() throws {
        var table = try SchedulingTable(host: HostProcessors(count: 2))
        try table.set(demand("alpha"))
        try table.set(demand("beta", weight: 300))
        let update = try table.set(demand("gamma", reserve: 50))
        #expect(update.changed.keys.sorted() == ["alpha", "beta", "gamma"])
        let plan = table.plan
        #expect(reservesHold(plan, Array(table.partitions.values), processors: 2, value: \.weight))
        // Unreserved capacity still divides 1:3 between alpha and beta (to rounding).
        let alpha = try #require(plan.partitions["alpha"]).weight
        let beta = try #require(plan.partitions["beta"]).weight
        #expect(abs(beta - 3 * alpha) <= 3)
    }

    @Test func aRefusedChangeLeavesTheTableAsItWas() throws {
        var table = try SchedulingTable(host: HostProcessors(count: 2))
        try table.set(demand("alpha", reserve: 100))
        try table.set(demand("beta", reserve: 50))
        let before = table.plan
        #expect(throws: SchedulingRefusal.self) { try table.set(demand("gamma", 2, reserve: 30)) }
        #expect(throws: SchedulingRefusal.self) { try table.set(demand("beta", 2, reserve: 100)) }
        #expect(table.plan == before)
        #expect(table.partitions.keys.sorted() == ["alpha", "beta"])
        #expect(table.partitions["beta"]?.processorCount == 1)
    }

    @Test func changingAPartitionsControlsRecomputes() throws {
        var table = try SchedulingTable(host: HostProcessors(count: 2))
        try table.set(demand("alpha", 2))
        let update = try table.set(demand("alpha", 2, limit: 50))
        #expect(update.changed["alpha"]?.quota == CPUQuota(quotaMicroseconds: 100_000, periodMicroseconds: 100_000))
    }

    @Test func removingAReservedPartitionRestoresPlainWeights() throws {
        var table = try SchedulingTable(host: HostProcessors(count: 2))
        try table.set(demand("alpha"))
        try table.set(demand("beta", weight: 300))
        let plain = table.plan
        try table.set(demand("gamma", reserve: 50))
        let update = table.remove(partition: "gamma")
        #expect(update.removed == ["gamma"])
        #expect(update.changed.keys.sorted() == ["alpha", "beta"])
        #expect(table.plan == plain)
        #expect(table.remove(partition: "nobody").isEmpty)
    }

    @Test func keepingTheParentApartIsAHostChange() throws {
        var table = try SchedulingTable(host: HostProcessors(count: 2))
        try table.set(demand("alpha"))
        let apart = try table.setHost(HostProcessors(processors: [0, 1], parentProcessors: [0]))
        #expect(apart.parent == .set(GroupParameters(shares: 1024, weight: 100, processors: [0])))
        #expect(apart.changed["alpha"]?.processors == [1])
        let together = try table.setHost(HostProcessors(count: 2))
        #expect(together.parent == .removed)
        #expect(together.changed["alpha"]?.processors == nil)
    }

    @Test func aHostTooSmallForTheReservesIsRefused() throws {
        var table = try SchedulingTable(host: HostProcessors(count: 2))
        try table.set(demand("alpha", reserve: 100))
        try table.set(demand("beta", reserve: 100))
        #expect(throws: SchedulingRefusal.reservesExceedCapacity(
            partitions: ["alpha", "beta"], neededHundredths: 200, processors: [1])) {
            try table.setHost(HostProcessors(processors: [0, 1], parentProcessors: [0]))
        }
        #expect(table.host == HostProcessors(count: 2))
    }
}
