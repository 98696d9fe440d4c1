// DiskBench: random 4 KiB read/write IOPS of a DiskBackend engine on an image file, to compare
// the engines with each other and with fio on the same file and pattern.
//
//   DiskBench --file /tmp/disk.img --size 1G --fill
//   DiskBench --file /tmp/disk.img --rw randread --qd 32 --engine io_uring [--direct] [--seconds 10]
//   DiskBench --file /tmp/disk.img --rw randwrite --qd 1 --engine threads:4   (or io_uring-single)
import DiskBackend
import Glibc
import GuestMemory

func fail(_ message: String) -> Never {
    let line = Array("DiskBench: \(message)\n".utf8)
    _ = line.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    exit(2)
}

var options: [String: String] = [:]
var flags: Set<String> = []
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    guard argument.hasPrefix("--") else { fail("unexpected argument \(argument)") }
    let name = String(argument.dropFirst(2))
    if ["direct", "fill"].contains(name) {
        flags.insert(name)
    } else if let value = arguments.popFirst() {
        options[name] = value
    } else {
        fail("--\(name) needs a value")
    }
}
guard let path = options["file"] else { fail("--file is required") }

func bytes(_ text: String) -> UInt64? {
    let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
    if let last = text.last, let unit = units[last] { return UInt64(text.dropLast()).map { $0 * unit } }
    return UInt64(text)
}

if flags.contains("fill") {
    guard let size = options["size"].flatMap(bytes) else { fail("--fill needs --size") }
    do {
        let image = try DiskImage.create(at: path, size: size)
        let chunk = 1 << 20
        let memory = try GuestMemory.create(name: "fill", size: chunk)
        try memory.write((0..<chunk).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }, at: GuestPhysicalAddress(0))
        let queue = try DiskQueue(image: image, depth: 8, engine: .threadPool(threads: 2))
        var offset: UInt64 = 0
        var tag: UInt64 = 0
        while offset < size || queue.inFlight > 0 {
            while offset < size, queue.hasRoom {
                let length = min(UInt64(chunk), size - offset)
                let buffers = try memory.ioVectors([GuestMemorySegment(pageNumber: 0, offset: 0, length: UInt32(length))])
                try queue.submit(DiskRequest(tag: tag, operation: .write(offset: offset, buffers: buffers, forceUnitAccess: false)))
                offset += length
                tag += 1
            }
            for completion in try queue.waitForCompletions(timeoutMilliseconds: 10_000) {
                if case .failure(let error) = completion.result { fail("\(error)") }
            }
        }
        try queue.submit(DiskRequest(tag: tag, operation: .flush))
        _ = try queue.waitForCompletions(timeoutMilliseconds: 60_000)
        print("filled \(path) with \(size) bytes")
    } catch {
        fail("\(error)")
    }
    exit(0)
}

let engine: DiskEngineKind
switch options["engine"] ?? "io_uring" {
case "io_uring": engine = .ioURing
case "io_uring-single": engine = .ioURingSingleIssuer
case let text where text.hasPrefix("threads:"):
    guard let count = Int(text.dropFirst("threads:".count)), count > 0 else { fail("bad thread count in \(text)") }
    engine = .threadPool(threads: count)
case let other: fail("unknown engine \(other)")
}
guard let pattern = DiskBenchmark.Pattern(rawValue: options["rw"] ?? "randread") else { fail("--rw is randread or randwrite") }
let configuration = DiskBenchmark.Configuration(
    path: path, pattern: pattern, blockSize: Int(options["bs"] ?? "4096") ?? 4096, queueDepth: Int(options["qd"] ?? "32") ?? 32,
    seconds: Double(options["seconds"] ?? "10") ?? 10, engine: engine, direct: flags.contains("direct"))
do {
    let result = try DiskBenchmark.run(configuration)
    print("engine=\(engine) rw=\(pattern.rawValue) qd=\(configuration.queueDepth) direct=\(configuration.direct) iops=\(Int(result.iops.rounded()))")
} catch {
    fail("\(error)")
}
