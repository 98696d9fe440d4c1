import GuestKit
import GuestVMBus
import HyperV
import IDEVSC
import StorageProtocol
import StorageVSC
import VMBusProtocol

/// The storage modes: the synthetic SCSI controller through StorageVSC (the primary channel and
/// its sub-channels), and the same disk through the emulated IDE channel with the ATA PIO driver.
///
/// - `mode=storage`: initialize, discover, write a pattern, flush and read it back through each
///   path, each checking what the other wrote; then a short workload per path.
/// - `mode=storage-flush`: write a pattern and SYNCHRONIZE CACHE, then a FUA write, announcing each
///   completion on the console, and stay up (the durability test kills the parent then).
/// - `mode=storage-bench points=rw:bs:qd,... seconds=S region=BYTES`: each point through both paths.
///
/// Arguments: `channels=N` (primary plus sub-channels, default 4), `region=BYTES` (default 4 MiB),
/// `ide=0` to leave the emulated disk alone, `seed=N`.
struct StorageProgram {
    let info: BootInfo
    let clock: Clock
    let memory = GuestBufferMemory()

    init(info: BootInfo) {
        self.info = info
        clock = Clock(tscFrequencyHz: info.tscFrequencyHz)
        PageAllocator.configure(start: info.freeMemoryStart + 4096, limit: info.memorySize)
    }

    func run(_ mode: String) -> Never {
        var client = VMBusDriver(clock: clock)
        guard client.connect(), client.requestOffers() else { fail("storage: VMBus did not come up") }
        guard let offer = client.offers.first(where: {
            $0.interfaceType == StorageChannelConstants.scsiInterfaceType && $0.subChannelIndex == 0
        }) else { fail("storage: no SCSI controller offered") }
        guard let channel = client.open(offer, ringPages: 32) else { fail("storage: cannot open the SCSI channel") }
        var primary = StorageVSC(channel: channel)
        guard let properties = primary.initialize(), let version = primary.version else {
            fail("storage: initialization failed")
        }
        // Sub-channels: as many as asked for and offered.
        let wanted = UInt16(max(0, min(info.integer("channels", default: 4) - 1, Int(properties.maximumSubChannels))))
        var vscs = [primary]
        if wanted > 0, vscs[0].createSubChannels(wanted) {
            let instance = offer.interfaceInstance
            let offers = client.waitForOffers(count: Int(wanted), timeoutNanoseconds: 5_000_000_000) {
                $0.interfaceInstance == instance && $0.subChannelIndex > 0
            }
            for sub in offers {
                guard let opened = client.open(sub, ringPages: 32) else { fail("storage: cannot open sub-channel \(sub.subChannelIndex)") }
                vscs.append(StorageVSC(channel: opened, version: version))
            }
        }
        print("storage: scsi protocol \(version.major).\(version.minor), \(vscs.count) channels (\(properties.maximumSubChannels) sub-channels offered), max transfer \(properties.maximumTransferBytes)")
        guard let scratch = PageAllocator.allocate(pages: 1) else { fail("storage: out of memory") }
        let disks = vscs[0].discover(scratch: scratch, memory: memory)
        for disk in disks {
            print("storage: disk target=\(disk.target) lun=\(disk.lun) blocks=\(disk.blockCount) block=\(disk.blockSize) bytes=\(disk.capacityBytes) product=\"\(text(disk.product))\"")
        }
        guard let disk = disks.first else { fail("storage: no disk found") }
        var ide: ATADriver<GuestATAPorts>?
        if info.integer("ide", default: 1) != 0 {
            var driver = ATADriver(bus: GuestATAPorts(clock: clock, wordsOnly: info.integer("pio32", default: 1) == 0))
            if driver.probe() {
                print("storage: emulated disk sectors=\(driver.sectors) multiple=\(driver.multiple) lba48=\(driver.lba48) model=\"\(text(driver.model))\"")
                ide = driver
            } else {
                print("storage: no emulated IDE disk")
            }
        }
        switch mode {
        case "storage-flush": durability(&vscs[0], disk)
        case "storage-bench": bench(&vscs, disk, &ide)
        default: functional(&vscs, disk, &ide)
        }
        print("storage: done")
        if info.integer("poweroff", default: 0) != 0 { CPU.out8(PlatformPorts.power, PowerCommand.powerOff) }
        CPU.park()
    }

    // MARK: mode=storage

    func functional(_ vscs: inout [StorageVSC<GuestChannel>], _ disk: StorageDiskInfo, _ ide: inout ATADriver<GuestATAPorts>?) {
        let region = UInt64(max(info.integer("region", default: 4 << 20), 1 << 20)) / 2
        let seed = UInt64(info.integer("seed", default: 0x5107))
        // A short workload per path first (every channel carrying requests), then the pattern
        // passes over the region it scribbled on.
        var point = 0
        for (pattern, blockSize, depth) in [(StorageWorkload.Pattern.randomWrite, 4096, 16), (.randomRead, 4096, 16)] {
            let workload = StorageWorkload(pattern: pattern, blockSize: blockSize, queueDepth: depth,
                                           durationNanoseconds: 300_000_000, regionBytes: 2 * region)
            measure(workload, point: point, &vscs, disk, &ide)
            point += 1
        }
        guard let buffer = PageAllocator.allocate(pages: 256) else { fail("storage: out of memory") }
        // The first half through the synthetic controller: write, flush, read back.
        let synthetic = vscs[0].verify(disk: disk, regionBytes: region, chunk: 256 << 10, seed: seed, buffer: buffer, memory: memory)
        print("storage: synthetic write+flush+read-back \(synthetic.passed ? "passed" : "FAILED") bytes=\(synthetic.bytesChecked) mismatches=\(synthetic.mismatches) failures=\(synthetic.failures)")
        if var driver = ide {
            // The emulated path reads what the synthetic one wrote ...
            var data = [UInt8](repeating: 0, count: 64 << 10)
            var checked: UInt64 = 0
            var mismatches = 0
            var offset: UInt64 = 0
            while offset < region {
                let read = driver.read(lba: offset / 512, count: data.count / 512, into: &data, offset: 0)
                let expected = StoragePattern.bytes(at: offset, count: data.count, seed: seed)
                if read, data == expected {
                    checked += UInt64(data.count)
                } else {
                    mismatches += 1
                    // Which it was (for the first few): a command that failed (its status, or a
                    // timeout), or data that differs (from where).
                    if mismatches <= 4 {
                        let first = read ? (data.indices.first { data[$0] != expected[$0] } ?? -1) : -1
                        let status = driver.lastError.map { "status=\($0.status) error=\($0.error)" } ?? "timed out or ended busy"
                        print("storage: emulated read at \(offset) \(read ? "differs from byte \(first)" : "failed: \(status)")")
                    }
                }
                offset += UInt64(data.count)
            }
            print("storage: emulated read-back of the synthetic pattern \(mismatches == 0 && checked > 0 ? "passed" : "FAILED") bytes=\(checked) mismatches=\(mismatches)")
            // ... and writes the second half, which the synthetic path then reads.
            offset = region
            var written = true
            while offset < 2 * region {
                data = StoragePattern.bytes(at: offset, count: data.count, seed: seed ^ 0xFF)
                written = written && driver.write(lba: offset / 512, count: data.count / 512, from: data, offset: 0)
                offset += UInt64(data.count)
            }
            written = written && driver.flush()
            var back = StorageVerification()
            offset = region
            while offset < 2 * region {
                let range = GPARange(address: buffer, length: 64 << 10)
                memory.fillPattern(at: buffer, length: 64 << 10, diskOffset: offset, seed: 0)
                let read = vscs[0].run(.transfer(write: false, target: disk.target, lun: disk.lun, lba: offset / UInt64(disk.blockSize),
                                                 blocks: UInt32((64 << 10) / disk.blockSize), buffer: range))
                if read?.succeeded == true, memory.checkPattern(at: buffer, length: 64 << 10, diskOffset: offset, seed: seed ^ 0xFF) {
                    back.bytesChecked += 64 << 10
                } else {
                    back.mismatches += 1
                }
                offset += 64 << 10
            }
            print("storage: synthetic read-back of the emulated pattern \(written && back.mismatches == 0 ? "passed" : "FAILED") bytes=\(back.bytesChecked) mismatches=\(back.mismatches)")
            ide = driver
        }
    }

    // MARK: mode=storage-flush

    func durability(_ vsc: inout StorageVSC<GuestChannel>, _ disk: StorageDiskInfo) {
        let region = UInt64(max(info.integer("region", default: 1 << 20), 64 << 10))
        let seed = UInt64(info.integer("seed", default: 0xD0_4AB1E))
        guard let buffer = PageAllocator.allocate(pages: 16) else { fail("storage: out of memory") }
        let result = vsc.verify(disk: disk, regionBytes: region, chunk: 64 << 10, seed: seed, buffer: buffer, memory: memory,
                                write: true, flush: true, check: false)
        print("storage: flushed seed=\(seed) bytes=\(result.bytesWritten) \(result.flushed && result.failures == 0 ? "ok" : "FAILED")")
        // Then one FUA write right after the region, durable on its own.
        memory.fillPattern(at: buffer, length: 64 << 10, diskOffset: region, seed: seed)
        let fua = vsc.run(.transfer(write: true, target: disk.target, lun: disk.lun, lba: region / UInt64(disk.blockSize),
                                    blocks: UInt32((64 << 10) / disk.blockSize), buffer: GPARange(address: buffer, length: 64 << 10),
                                    forceUnitAccess: true))
        print("storage: fua written offset=\(region) bytes=\(64 << 10) \(fua?.succeeded == true ? "ok" : "FAILED")")
    }

    // MARK: mode=storage-bench

    func bench(_ vscs: inout [StorageVSC<GuestChannel>], _ disk: StorageDiskInfo, _ ide: inout ATADriver<GuestATAPorts>?) {
        let seconds = max(info.integer("ms", default: 3000), 100)
        let region = UInt64(info.integer("region", default: Int(min(disk.capacityBytes, 1 << 30))))
        var point = 0
        for text in (info.argument("points") ?? "randread:4096:32").split(separator: ",") {
            let fields = text.split(separator: ":")
            guard fields.count == 3, let pattern = StorageWorkload.Pattern(name: fields[0]),
                  let blockSize = decimal(fields[1]), let depth = decimal(fields[2]), blockSize >= 512, depth >= 1 else {
                print("storage: bad point \(text)")
                continue
            }
            let workload = StorageWorkload(pattern: pattern, blockSize: blockSize, queueDepth: depth,
                                           durationNanoseconds: UInt64(seconds) * 1_000_000, regionBytes: region,
                                           seed: 0x5EED &+ UInt64(point))
            measure(workload, point: point, &vscs, disk, &ide)
            point += 1
        }
    }

    /// Runs `workload` through the synthetic path, then the emulated one, and prints both.
    func measure(_ workload: StorageWorkload, point: Int, _ vscs: inout [StorageVSC<GuestChannel>], _ disk: StorageDiskInfo,
                 _ ide: inout ATADriver<GuestATAPorts>?) {
        let depth = max(1, workload.queueDepth)
        let pages = (workload.blockSize + 4095) / 4096
        guard let base = PageAllocator.allocate(pages: pages * depth) else { fail("storage: out of memory for point \(point)") }
        let buffers = (0..<depth).map { base + UInt64($0 * pages * 4096) }
        for buffer in buffers { memory.fillPattern(at: buffer, length: workload.blockSize, diskOffset: 0, seed: 0xB0) }
        let synthetic = workload.run(disk: disk, on: &vscs, buffers: buffers) { CPU.sleep(nanoseconds: 1_000_000) }
        report(point, "synthetic", workload, synthetic)
        // Written data goes to the medium before the next point (not timed), as fio's runs are
        // separated by a sync on the host.
        if workload.pattern.isWrite { _ = vscs[0].run(.synchronizeCache(target: disk.target, lun: disk.lun)) }
        guard var driver = ide else { return }
        var data = [UInt8](repeating: 0xB0, count: workload.blockSize)
        let emulated = driver.run(workload, clock: clock, buffer: &data)
        report(point, "emulated", workload, emulated)
        if workload.pattern.isWrite { _ = driver.flush() }
        ide = driver
    }

    func report(_ point: Int, _ path: String, _ workload: StorageWorkload, _ result: StorageWorkloadResult) {
        print("storage: point=\(point) path=\(path) rw=\(workload.pattern.name) bs=\(workload.blockSize) qd=\(workload.queueDepth) ops=\(result.operations) bytes=\(result.bytes) ns=\(result.nanoseconds) p50=\(result.p50Nanoseconds) p99=\(result.p99Nanoseconds) failures=\(result.failures)")
    }

    func text(_ bytes: [UInt8]) -> String {
        var end = bytes.count
        while end > 0, bytes[end - 1] == 0x20 || bytes[end - 1] == 0 { end -= 1 }
        return String(decoding: bytes[0..<end], as: UTF8.self)
    }

    func decimal(_ word: Substring) -> Int? {
        guard !word.isEmpty else { return nil }
        var value = 0
        for byte in word.utf8 {
            guard byte >= 0x30 && byte <= 0x39, value < Int.max / 10 - 10 else { return nil }
            value = value * 10 + Int(byte - 0x30)
        }
        return value
    }

    func fail(_ message: String) -> Never {
        print(message)
        CPU.park()
    }
}
