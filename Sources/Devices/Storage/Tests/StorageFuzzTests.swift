import StorageProtocol
import StorageVSP
import Testing
import TestSupport

@Suite("Storage server fuzzing (seeded; StorageFuzzHarness also runs long-form)")
struct StorageFuzzTests {
    @Test("Generated and mutated packets: every answer owed is sent once, 64 bytes, within buffers and the disk",
          arguments: [UInt64(0x5EED_0001), 0x5EED_0002, 0x5EED_0003])
    func fuzzServer(seed: UInt64) {
        let report = StorageFuzzHarness.run(seed: seed, iterations: 1500)
        #expect(report.failures.isEmpty, "\(report.failures.prefix(10))")
        // The run must actually exercise the server: answers, requests, notifications.
        #expect(report.answers > 1000 && report.requests > 100, "\(report)")
    }

    @Test("The generator replays exactly from its seed")
    func generatorIsDeterministic() {
        var first = StoragePacketGenerator(seed: 42)
        var second = StoragePacketGenerator(seed: 42)
        for _ in 0..<200 {
            let a = first.mutate(first.srbPacket(blockCount: 100, blockSize: 512, maximumTransferBytes: 0x40000))
            let b = second.mutate(second.srbPacket(blockCount: 100, blockSize: 512, maximumTransferBytes: 0x40000))
            #expect(a == b)
        }
    }

    @Test("Random CDBs never trap the disk, and always get an outcome")
    func randomCDBs() {
        var generator = SeededGenerator(seed: 0xCDB)
        var disk = SCSIDisk(configuration: testDisk(), maximumTransferBytes: 0x40000)
        for _ in 0..<20_000 {
            var cdb = generator.bytes(Int.random(in: 0...16, using: &generator))
            if !cdb.isEmpty, Bool.random(using: &generator) {
                cdb[0] = [0x00, 0x03, 0x08, 0x0A, 0x12, 0x1A, 0x1B, 0x25, 0x28, 0x2A, 0x35, 0x42, 0x5A, 0x88, 0x8A, 0x91, 0x9E, 0xA0,
                          0xA8, 0xAA].randomElement(using: &generator)!
            }
            _ = run(&disk, cdb)
            _ = disk.unmap(parameterList: generator.bytes(Int.random(in: 0...64, using: &generator)))
        }
    }
}
