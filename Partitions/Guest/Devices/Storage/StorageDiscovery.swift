import HyperV
import StorageProtocol
import VMBusClient
import VMBusProtocol

/// A disk the VSC found on the controller.
public struct StorageDiskInfo {
    public var target: UInt8
    public var lun: UInt8
    /// The logical block size (READ CAPACITY(16)).
    public var blockSize: Int
    public var blockCount: UInt64
    /// INQUIRY vendor and product identification, space padded.
    public var vendor: [UInt8]
    public var product: [UInt8]

    public var capacityBytes: UInt64 { blockCount &* UInt64(blockSize) }
}

extension StorageVSC {
    /// The disks of `target`, as Linux's scan finds them: REPORT LUNS, then for each LUN INQUIRY
    /// (peripheral qualifier 0 only) and READ CAPACITY(16). `scratch` is a guest page the data-in
    /// commands use. Run it with nothing else in flight.
    public mutating func discover<Memory: StorageBufferMemory>(target: UInt8 = 0, scratch: UInt64, memory: Memory)
        -> [StorageDiskInfo]
    {
        let page = VMBusConstants.pageSize
        let report = StorageRequest(target: target, lun: 0, cdb: ReportLUNsCDB(allocationLength: UInt32(page)).bytes,
                                    direction: .read, buffer: GPARange(address: scratch, length: page))
        guard let reported = run(report), reported.succeeded,
              let list = try? ReportLUNsData(parsing: memory.read(at: scratch, count: Int(min(reported.transferred, UInt32(page)))))
        else { return [] }
        var disks: [StorageDiskInfo] = []
        for lun in list.luns where lun < 255 {
            let lun = UInt8(lun)
            let inquiry = StorageRequest(target: target, lun: lun, cdb: InquiryCDB(allocationLength: 36).bytes, direction: .read,
                                         buffer: GPARange(address: scratch, length: 36))
            guard let answered = run(inquiry), answered.succeeded, answered.transferred >= 36 else { continue }
            let data = memory.read(at: scratch, count: 36)
            guard data[0] == 0 else { continue }
            let capacity = StorageRequest(target: target, lun: lun, cdb: ReadCapacity16CDB(allocationLength: 32).bytes,
                                          direction: .read, buffer: GPARange(address: scratch, length: 32))
            guard let measured = run(capacity), measured.succeeded,
                  let size = try? ReadCapacity16Data(parsing: memory.read(at: scratch, count: 32)) else { continue }
            disks.append(StorageDiskInfo(target: target, lun: lun, blockSize: Int(size.blockLength),
                                         blockCount: size.lastLogicalBlockAddress &+ 1,
                                         vendor: Array(data[8..<16]), product: Array(data[16..<32])))
        }
        return disks
    }
}
