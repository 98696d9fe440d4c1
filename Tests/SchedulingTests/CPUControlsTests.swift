import Scheduling
import Testing

@Suite("CPU controls")
struct CPUControlsTests {
    @Test func defaultsAreNoReserveNoLimitWeight100() {
        #expect(CPUControls.default.reserve == 0)
        #expect(CPUControls.default.limit == 100)
        #expect(CPUControls.default.weight == 100)
        #expect(!CPUControls.default.isLimited)
    }

    @Test func boundsAreAccepted() throws {
        let low = try CPUControls(reserve: 0, limit: 1, weight: 1)
        let high = try CPUControls(reserve: 100, limit: 100, weight: 10_000)
        #expect(low.isLimited && !high.isLimited)
    }

    @Test(arguments: [
        (-1, 100, 100, CPUControlsError.reserveOutOfRange(-1)),
        (101, 100, 100, .reserveOutOfRange(101)),
        (0, 0, 100, .limitOutOfRange(0)),
        (0, 101, 100, .limitOutOfRange(101)),
        (0, 100, 0, .weightOutOfRange(0)),
        (0, 100, 10_001, .weightOutOfRange(10_001)),
        (60, 40, 100, .reserveAboveLimit(reserve: 60, limit: 40)),
    ])
    func outOfRangeValuesAreRefused(reserve: Int, limit: Int, weight: Int, expected: CPUControlsError) {
        #expect(throws: expected) { try CPUControls(reserve: reserve, limit: limit, weight: weight) }
    }

    @Test func aReserveAboveTheLimitIsRefusedWithASentence() {
        let error = CPUControlsError.reserveAboveLimit(reserve: 60, limit: 40)
        #expect(error.description == "The processor reserve (60%) is above the limit (40%): a partition cannot be "
            + "guaranteed more than it may use.")
    }
}
