import DeviceModel
import Foundation
import KVM
import LocalDeployment
import ManagementAPI
import StorageVSC
import Testing

/// Disks of real child partitions: the Embedded guest's storvsc and ATA PIO drivers against the
/// parent's SCSI VSP and emulated IDE channel, on one image file.
@Suite("Storage with real child partitions", .enabled(if: KVMSystem.isUsable, "needs /dev/kvm"), .serialized)
struct StorageIntegrationTests {
    /// A sparse image file of `size` bytes in the deployment's directory.
    func image(_ test: TestDeployment, _ name: String, size: Int) throws -> String {
        let path = "\(test.directory)/\(name)"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: UInt64(size))
        try handle.close()
        return path
    }

    func scsi(_ path: String, extra: [String: JSONValue] = [:]) -> DeviceConfiguration {
        var disk: [String: JSONValue] = ["path": .string(path), "lun": .number(0), "model": .string("hv test disk")]
        disk.merge(extra) { _, new in new }
        return DeviceConfiguration(kind: "scsi", settings: ["disks": .array([.object(disk)])])
    }

    func bytes(_ path: String, offset: Int, count: Int) throws -> [UInt8] {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        return [UInt8](try handle.read(upToCount: count) ?? Data())
    }

    @Test func guestDrivesTheSyntheticAndTheEmulatedDiskOverOneFile() async throws {
        let test = try await TestDeployment.start("storage")
        defer { test.stop() }
        let path = try image(test, "disk.img", size: 16 << 20)
        try await test.create("disks", processors: 2, memoryMiB: 64, arguments: "mode=storage region=\(4 << 20) channels=2",
                              devices: [scsi(path), DeviceConfiguration(kind: "ide", settings: ["path": .string(path)])])
        try await test.deployment.perform("start", on: "disks")
        _ = try await test.deployment.waitForConsole("disks", containing: "storage: done", timeoutSeconds: 300)
        let lines = try await test.deployment.console("disks", lines: 200)
        func line(_ text: String) -> Bool { lines.contains { $0.contains(text) } }
        #expect(line("storage: scsi protocol 6.2, 2 channels"), "\(lines)")
        #expect(line("disk target=0 lun=0 blocks=32768 block=512 bytes=16777216 product=\"hv test disk\""), "\(lines)")
        #expect(line("emulated disk sectors=32768"), "\(lines)")
        #expect(line("synthetic write+flush+read-back passed"), "\(lines)")
        #expect(line("emulated read-back of the synthetic pattern passed"), "\(lines)")
        #expect(line("synthetic read-back of the emulated pattern passed"), "\(lines)")
        let points = lines.filter { $0.contains("storage: point=") }
        #expect(points.count == 4 && points.allSatisfy { $0.contains("failures=0") && !$0.contains(" ops=0 ") }, "\(points)")
        // What the guest wrote is in the file, through either controller.
        #expect(try bytes(path, offset: 1 << 20, count: 4096) == StoragePattern.bytes(at: 1 << 20, count: 4096, seed: 0x5107))
        #expect(try bytes(path, offset: 3 << 20, count: 4096) == StoragePattern.bytes(at: 3 << 20, count: 4096, seed: 0x5107 ^ 0xFF))
        let facts = try await test.deployment.info("disks").status
        #expect(facts.contains { $0.key.hasSuffix(".protocol") && $0.value == "6.2" }, "\(facts)")
        #expect(facts.contains { $0.key.hasSuffix(".channels") && $0.value == "2" }, "\(facts)")
    }

    /// No acknowledged data lives only in the parent's memory: right after the guest sees its
    /// flush complete, the parent dies by SIGKILL, and the data is in the file.
    @Test func aFlushedWriteSurvivesTheParentsSIGKILL() async throws {
        let test = try await TestDeployment.start("flush")
        defer { test.stop() }
        let path = try image(test, "durable.img", size: 8 << 20)
        let seed: UInt64 = 0xD0_4AB1E
        try await test.create("durable", memoryMiB: 64, arguments: "mode=storage-flush ide=0 region=\(2 << 20) seed=\(seed)",
                              devices: [scsi(path)])
        try await test.deployment.perform("start", on: "durable")
        let flushed = try await test.deployment.waitForConsole("durable", containing: "storage: flushed", timeoutSeconds: 120)
        test.deployment.killParent()
        #expect(flushed.hasSuffix("ok"), "\(flushed)")
        for offset in stride(from: 0, to: 2 << 20, by: 256 << 10) {
            #expect(try bytes(path, offset: offset, count: 4096) == StoragePattern.bytes(at: UInt64(offset), count: 4096, seed: seed),
                    "flushed data at \(offset) is in the file")
        }
    }

    @Test func aFUAWriteSurvivesTheParentsSIGKILL() async throws {
        let test = try await TestDeployment.start("fua")
        defer { test.stop() }
        let path = try image(test, "fua.img", size: 8 << 20)
        let seed: UInt64 = 0xF0A
        try await test.create("fua", memoryMiB: 64, arguments: "mode=storage-flush ide=0 region=\(1 << 20) seed=\(seed)",
                              devices: [scsi(path, extra: ["writeCache": .bool(true)])])
        try await test.deployment.perform("start", on: "fua")
        let written = try await test.deployment.waitForConsole("fua", containing: "storage: fua written", timeoutSeconds: 120)
        test.deployment.killParent()
        #expect(written.hasSuffix("ok"), "\(written)")
        #expect(try bytes(path, offset: 1 << 20, count: 64 << 10) == StoragePattern.bytes(at: 1 << 20, count: 64 << 10, seed: seed))
    }
}
