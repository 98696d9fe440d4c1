import Foundation
import Synchronization
import Testing

@testable import GuestBuilder

@Suite("Guest image cache")
struct GuestCacheTests {
    /// A scratch directory holding two finished builds of the same guest.
    private static func twoFinishedBuilds() throws -> (directory: String, first: String, second: String, output: String) {
        let directory = NSTemporaryDirectory() + "guest-cache-\(UInt64.random(in: 0...UInt64.max))"
        for build in ["first", "second"] {
            try FileManager.default.createDirectory(atPath: "\(directory)/\(build)", withIntermediateDirectories: true)
            try Data(build.utf8).write(to: URL(fileURLWithPath: "\(directory)/\(build)/guest.elf"))
        }
        return (directory, "\(directory)/first", "\(directory)/second", "\(directory)/Guest-0123456789abcdef")
    }

    @Test func aPublishedImageIsNeverReplacedByAConcurrentBuild() throws {
        let (directory, first, second, output) = try Self.twoFinishedBuilds()
        defer { try? FileManager.default.removeItem(atPath: directory) }

        try GuestBuilder.publish(first, as: output)
        let image = "\(output)/guest.elf"
        #expect(FileManager.default.contents(atPath: image) == Data("first".utf8))

        // The second build of the same inputs finishes later: the image handed out stays.
        try GuestBuilder.publish(second, as: output)
        #expect(FileManager.default.contents(atPath: image) == Data("first".utf8))
        #expect(!FileManager.default.fileExists(atPath: second), "the losing build's directory is discarded")
    }

    @Test func anOutputWithoutAnImageIsReplaced() throws {
        let (directory, first, _, output) = try Self.twoFinishedBuilds()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        try Data("leftover".utf8).write(to: URL(fileURLWithPath: "\(output)/Guest.o"))

        try GuestBuilder.publish(first, as: output)
        #expect(FileManager.default.contents(atPath: "\(output)/guest.elf") == Data("first".utf8))
        #expect(!FileManager.default.fileExists(atPath: "\(output)/Guest.o"))
    }

    @Test func concurrentCallersShareOneBuild() async throws {
        let flight = SingleFlight<Int, GuestBuildError>()
        let runs = Counter()
        let arrived = Counter()
        let results = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    // Nothing suspends between arriving and joining the flight.
                    _ = arrived.increment()
                    return try await flight.run(key: "Guest") { () async throws(GuestBuildError) -> Int in
                        let run = runs.increment()
                        // The build lasts until every caller has arrived (a loaded machine may
                        // start the last task late), and a little longer for it to join.
                        let deadline = ContinuousClock.now + .seconds(10)
                        while arrived.value < 8 && ContinuousClock.now < deadline {
                            try? await Task.sleep(for: .milliseconds(5))
                        }
                        try? await Task.sleep(for: .milliseconds(100))
                        return run
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(runs.increment() == 2, "exactly one build ran before")
        #expect(results == Array(repeating: 1, count: 8))
    }

    @Test func aFailedBuildIsRetriedByTheNextCaller() async throws {
        let flight = SingleFlight<Int, GuestBuildError>()
        await #expect(throws: GuestBuildError.self) {
            try await flight.run(key: "Guest") { () async throws(GuestBuildError) -> Int in
                throw .io("disk full")
            }
        }
        let value = try await flight.run(key: "Guest") { () async throws(GuestBuildError) -> Int in 7 }
        #expect(value == 7)
    }
}

private final class Counter: Sendable {
    private let count = Mutex(0)

    /// Adds one and returns the new count.
    func increment() -> Int {
        count.withLock { count in
            count += 1
            return count
        }
    }

    /// The count so far.
    var value: Int { count.withLock { $0 } }
}
