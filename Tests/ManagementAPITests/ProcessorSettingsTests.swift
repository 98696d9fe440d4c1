import Foundation
import ManagementAPI
import Testing

@Suite("Processor controls in the API")
struct ProcessorSettingsTests {
    @Test func aConfigurationsCPUObjectIsOptionalAndEachFieldToo() throws {
        let plain = #"{"name": "alpha", "guest": {"embedded": {"image": "Guest"}}}"#
        #expect(try JSONDecoder().decode(PartitionConfiguration.self, from: Data(plain.utf8)).cpu == nil)
        let full = #"{"name": "alpha", "guest": {"embedded": {"image": "Guest"}}, "cpu": {"reserve": 25, "limit": 50, "weight": 200, "affinity": [1]}}"#
        let configuration = try JSONDecoder().decode(PartitionConfiguration.self, from: Data(full.utf8))
        #expect(configuration.cpu == ProcessorSettings(reserve: 25, limit: 50, weight: 200, affinity: [1]))
        let partial = #"{"name": "alpha", "guest": {"embedded": {"image": "Guest"}}, "cpu": {"weight": 7}}"#
        #expect(try JSONDecoder().decode(PartitionConfiguration.self, from: Data(partial.utf8)).cpu
            == ProcessorSettings(weight: 7))
        // And it survives the trip to the root.
        let encoded = try JSONEncoder().encode(configuration)
        #expect(try JSONDecoder().decode(PartitionConfiguration.self, from: encoded) == configuration)
        #expect(try JSONDecoder().decode(PartitionConfiguration.self, from: JSONEncoder().encode(
            PartitionConfiguration(name: "b", processors: 1, memoryMiB: 16,
                                   guest: .embedded(image: "G", arguments: "", imagePath: nil)))).cpu == nil)
    }

    @Test func aChangeKeepsWhatItDoesNotNameAndAnEmptyAffinityUnpins() {
        let current = ProcessorSettings(reserve: 10, limit: 50, weight: 200, affinity: [0, 1])
        #expect(current.applying(ProcessorSettings(weight: 300))
            == ProcessorSettings(reserve: 10, limit: 50, weight: 300, affinity: [0, 1]))
        #expect(current.applying(ProcessorSettings(reserve: 0, affinity: []))
            == ProcessorSettings(reserve: 0, limit: 50, weight: 200, affinity: nil))
        #expect(current.applying(ProcessorSettings()) == current)
        #expect(ProcessorSettings().isEmpty && !ProcessorSettings(affinity: []).isEmpty)
    }
}
