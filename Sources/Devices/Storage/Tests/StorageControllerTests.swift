import StorageProtocol
import StorageVSP
import Testing
import TestSupport

@Suite("Adapter addressing: which path, target and LUN answers what (storvsc_drv.c, scsi_scan.c)")
struct StorageControllerTests {
    func controller() throws -> StorageController {
        let controller = StorageController()
        try controller.attach(testDisk(serial: "A"), target: 0, lun: 0)
        try controller.attach(testDisk(serial: "B"), target: 0, lun: 3)
        try controller.attach(testDisk(serial: "C"), target: 1, lun: 0)
        return controller
    }

    @Test("INQUIRY to an absent unit answers 0x7F with data; LUN 0 keeps the identity strings")
    func absentInquiry() throws {
        let controller = try controller()
        let lunZero = try #require(dataIn(controller.execute(InquiryCDB().bytes, at: .init(path: 2, target: 1, lun: 0)).outcome))
        #expect(lunZero == [0x7F, 0x00, 0x05, 0x02, 0x1F, 0, 0, 0] + ascii("Msft    ") + ascii("Virtual Disk    ") + ascii("1.0 "))
        let other = try #require(dataIn(controller.execute(InquiryCDB().bytes, at: .init(path: 0, target: 0, lun: 1)).outcome))
        #expect(other == [0x7F, 0x00, 0x05, 0x02, 0x1F] + [UInt8](repeating: 0, count: 31))
        // Disks live on path 0 only: the same target and LUN on another path is absent.
        let otherPath = try #require(dataIn(controller.execute(InquiryCDB().bytes, at: .init(path: 1, target: 0, lun: 0)).outcome))
        #expect(otherPath[0] == 0x7F)
        let present = try #require(dataIn(controller.execute(InquiryCDB().bytes, at: .init(target: 0, lun: 3)).outcome))
        #expect(present[0] == 0x00)
    }

    @Test("REPORT LUNS answers GOOD on every path and target; empty where nothing is attached")
    func reportLUNs() throws {
        let controller = try controller()
        let target0 = try #require(dataIn(controller.execute(ReportLUNsCDB().bytes, at: .init(target: 0, lun: 0)).outcome))
        #expect(target0 == [0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0])
        // Sent to an absent LUN of the target, it still reports the target's units.
        let viaAbsent = try #require(dataIn(controller.execute(ReportLUNsCDB().bytes, at: .init(target: 0, lun: 7)).outcome))
        #expect(viaAbsent == target0)
        for path: UInt8 in 1..<8 {
            for target: UInt8 in 0..<2 {
                let data = try #require(dataIn(controller.execute(ReportLUNsCDB().bytes, at: .init(path: path, target: target, lun: 0)).outcome))
                #expect(data == [0, 0, 0, 0, 0, 0, 0, 0])
            }
        }
        // The allocation length cuts the list but the length field stays true.
        let short = try #require(dataIn(controller.execute(ReportLUNsCDB(allocationLength: 8).bytes, at: .init(target: 0, lun: 0)).outcome))
        #expect(short == [0, 0, 0, 16, 0, 0, 0, 0])
        #expect(try ReportLUNsData(parsing: target0).luns == [0, 3])
        #expect(sense(controller.execute(ReportLUNsCDB(selectReport: 3).bytes, at: .init(target: 0, lun: 0)).outcome)?.additional
            == .invalidFieldInCDB)
        #expect(sense(controller.execute(ReportLUNsCDB(allocationLength: 3).bytes, at: .init(target: 0, lun: 0)).outcome)?.additional
            == .invalidFieldInCDB)
        #expect(dataIn(controller.execute(ReportLUNsCDB(selectReport: 1).bytes, at: .init(target: 0, lun: 0)).outcome)
            == [0, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test("Other commands to an absent unit: LOGICAL UNIT NOT SUPPORTED, never INVALID_LUN")
    func absentCommands() throws {
        let controller = try controller()
        for address in [StorageController.Address(path: 3, target: 0, lun: 0), .init(target: 1, lun: 9), .init(path: 7, target: 1, lun: 254)] {
            let outcome = controller.execute(TestUnitReadyCDB().bytes, at: address).outcome
            #expect(sense(outcome) == .illegalRequest(.logicalUnitNotSupported))
            #expect(sense(controller.execute(InquiryCDB(vitalProductData: true, pageCode: 0).bytes, at: address).outcome)
                == .illegalRequest(.logicalUnitNotSupported))
            #expect(dataIn(controller.execute(RequestSenseCDB().bytes, at: address).outcome)
                == SenseData.illegalRequest(.logicalUnitNotSupported).bytes)
        }
    }

    @Test("A removed path-0 unit answers INVALID_LUN to all but INQUIRY and REPORT LUNS, until re-attached")
    func hotRemove() throws {
        let controller = try controller()
        let before = controller.busGeneration
        let removed = try #require(controller.detach(target: 0, lun: 3))
        #expect(controller.busGeneration == before + 1)
        let address = StorageController.Address(target: 0, lun: 3)
        #expect(controller.execute(TestUnitReadyCDB().bytes, at: address).outcome == .invalidLUN)
        #expect(controller.execute(ReadWriteCDB(direction: .read, logicalBlockAddress: 0, transferLength: 1).bytes, at: address).outcome
            == .invalidLUN)
        #expect(dataIn(controller.execute(InquiryCDB().bytes, at: address).outcome)?.first == 0x7F)
        #expect(try ReportLUNsData(parsing: try #require(dataIn(controller.execute(ReportLUNsCDB().bytes, at: address).outcome))).luns == [0])
        // The same target and LUN on another path is not the removed unit.
        #expect(sense(controller.execute(TestUnitReadyCDB().bytes, at: .init(path: 1, target: 0, lun: 3)).outcome)
            == .illegalRequest(.logicalUnitNotSupported))
        let again = try controller.attach(testDisk(serial: "B2"), target: 0, lun: 3)
        #expect(again != removed)
        #expect(controller.execute(TestUnitReadyCDB().bytes, at: address).outcome == .good)
        #expect(controller.detach(target: 1, lun: 7) == nil)
    }

    @Test("Attach refuses bad addresses, occupied addresses and bad configurations")
    func attachRefusals() throws {
        let controller = try controller()
        #expect(throws: StorageControllerError.occupied(.init(target: 0, lun: 0))) { try controller.attach(testDisk(), target: 0, lun: 0) }
        #expect(throws: StorageControllerError.self) { try controller.attach(testDisk(), target: 2, lun: 0) }
        #expect(throws: StorageControllerError.self) { try controller.attach(testDisk(), target: 0, lun: 255) }
        #expect(throws: StorageControllerError.self) { try controller.attach(testDisk(blockSize: 2048), target: 1, lun: 1) }
    }

    @Test("Resize reports CAPACITY DATA HAS CHANGED once and bumps the bus generation")
    func resize() throws {
        let controller = try controller()
        let generation = controller.busGeneration
        #expect(controller.resize(target: 1, lun: 0, blockCount: 8192))
        #expect(controller.busGeneration == generation + 1)
        let address = StorageController.Address(target: 1, lun: 0)
        #expect(sense(controller.execute(TestUnitReadyCDB().bytes, at: address).outcome) == .unitAttention(.capacityDataHasChanged))
        #expect(controller.execute(TestUnitReadyCDB().bytes, at: address).outcome == .good)
        #expect(!controller.resize(target: 1, lun: 5, blockCount: 1))
    }

    @Test("The maximum transfer is whole pages within 4 KiB...4092 KiB (1024 I/O vectors from mid-page), whatever the configuration says")
    func maximumTransferClamped() {
        #expect(StorageController(maximumTransferBytes: 0).maximumTransferBytes == 4096)
        #expect(StorageController(maximumTransferBytes: 0x40001).maximumTransferBytes == 0x40000)
        #expect(StorageController(maximumTransferBytes: .max).maximumTransferBytes == 4092 * 1024)
        #expect(StorageController(maximumTransferBytes: 8 << 20).maximumTransferBytes == 4092 * 1024)
    }

    @Test("The bus-change callback runs on attach, detach and resize")
    func busChangeCallback() throws {
        let count = CallCounter()
        let controller = StorageController(onBusChange: { count.increment() })
        try controller.attach(testDisk(), target: 0, lun: 0)
        controller.resize(target: 0, lun: 0, blockCount: 100)
        controller.detach(target: 0, lun: 0)
        #expect(count.value == 3)
    }
}

import Synchronization

final class CallCounter: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}
