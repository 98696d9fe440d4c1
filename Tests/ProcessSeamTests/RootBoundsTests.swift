import DeviceModel
import DeviceRegistry
import Foundation
import CKVM
import Glibc
@testable import KVM
import LinuxSupport
import Logging
import ManagementAPI
@testable import Partition
import Privilege
@testable import RootScheduler
import Synchronization
import Testing
import TestSupport
import VMBusProtocol

/// What a user of the API, a configuration or a guest can make the root hold or read: each
/// bounded, each refusal a typed answer (Docs/security.md). Every test here failed on the code
/// before the bounds.
@Suite("Root bounds: what requests and guests can make the root read and keep", .serialized)
struct RootBoundsTests {
    static let isRoot = geteuid() == 0

    /// A root scheduler over a mock kernel that answers as a KVM with every capability.
    static func scheduler(catalog: DeviceCatalog = DeviceRegistry.catalog, logger: Logger = quietLogger) throws
        -> (RootScheduler, MockKernel)
    {
        let kernel = MockKernel()
        kernel.respond(to: CKVM_GET_TSC_KHZ) { _, _ in .success(2_000_000) }
        kernel.respond(to: CKVM_GET_MSRS) { _, pointer in
            guard let pointer else { return .failure(.badAddress) }
            let count = pointer.load(as: kvm_msrs.self).nmsrs
            return .success(Int32(count))
        }
        let scheduler = try MockKernel.$current.withValue(kernel) { try RootScheduler(catalog: catalog, logger: logger) }
        return (scheduler, kernel)
    }

    /// The smallest Embedded guest image the root loads: an x86-64 ET_EXEC with one PT_LOAD byte.
    static func imageFile() throws -> String {
        var elf = [UInt8](repeating: 0, count: 121)
        elf.replaceSubrange(0..<8, with: [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0])
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            for index in 0..<(T.bitWidth / 8) { elf[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
        }
        put(UInt16(2), at: 16)           // ET_EXEC
        put(UInt16(0x3E), at: 18)        // x86-64
        put(UInt32(1), at: 20)
        put(UInt64(0x20_0000), at: 24)   // entry
        put(UInt64(64), at: 32)          // program headers
        put(UInt16(64), at: 52)
        put(UInt16(56), at: 54)
        put(UInt16(1), at: 56)
        put(UInt32(1), at: 64)           // PT_LOAD
        put(UInt32(5), at: 68)
        put(UInt64(120), at: 72)         // offset
        put(UInt64(0x20_0000), at: 80)
        put(UInt64(0x20_0000), at: 88)   // physical
        put(UInt64(1), at: 96)           // file size
        put(UInt64(1), at: 104)          // memory size
        elf[120] = 0xF4                  // hlt
        let path = NSTemporaryDirectory() + "hv-bounds-\(UUID().uuidString).elf"
        try Data(elf).write(to: URL(fileURLWithPath: path))
        return path
    }

    static func configuration(_ name: String, image: String) -> PartitionConfiguration {
        PartitionConfiguration(name: name, processors: 1, memoryMiB: 16,
                               guest: .embedded(image: "Guest", arguments: "", imagePath: image))
    }

    @Test func aPartitionCanBeCreatedOverTheMockKernel() throws {
        let (scheduler, kernel) = try Self.scheduler()
        let image = try Self.imageFile()
        defer { unlink(image) }
        let info = try MockKernel.$current.withValue(kernel) { () throws(RootError) in
            try scheduler.create(Self.configuration("alpha", image: image))
        }
        #expect(info.state == "created")
    }
}

extension RootBoundsTests {
    /// Runs `body` on a thread of its own and waits up to `seconds` for it; nil if it did not
    /// finish (a deadline on the wait: the old code blocked here for good).
    static func within<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () -> T) -> T? {
        let result = Mutex<T?>(nil)
        let done = Atomic<Bool>(false)
        _ = try? OSThread.spawn(name: "bounded") {
            let value = body()
            result.withLock { $0 = value }
            done.store(true, ordering: .releasing)
        }
        _ = eventually(within: seconds) { done.load(ordering: .acquiring) }
        return result.withLock { $0 }
    }

    static func linux(_ name: String, kernel: String, initrd: String? = nil) -> PartitionConfiguration {
        PartitionConfiguration(name: name, processors: 1, memoryMiB: 16,
                               guest: .linux(kernel: kernel, initrd: initrd, commandLine: "console=ttyS0"))
    }

    /// A kernel path naming a FIFO (or a device) is refused at once: the root opens it without
    /// blocking and reads only regular files. Before: the root read it until EOF — forever for a
    /// FIFO nobody writes, without bound for /dev/zero.
    @Test func aKernelPathNamingAFIFOIsRefusedWithoutBlocking() throws {
        let (scheduler, _) = try Self.scheduler()
        let fifo = NSTemporaryDirectory() + "hv-fifo-\(UUID().uuidString)"
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let outcome = Self.within(20) { () -> String in
            do throws(RootError) {
                _ = try scheduler.create(Self.linux("alpha", kernel: fifo))
                return "created"
            } catch {
                return error.description
            }
        }
        let sentence = try #require(outcome, "the root blocked on the FIFO")
        #expect(sentence == "Kernel \(fifo) is not a regular file: name the file itself.")
        let zero = Self.within(20) { () -> String in
            do throws(RootError) {
                _ = try scheduler.create(Self.linux("beta", kernel: "/dev/zero"))
                return "created"
            } catch {
                return error.description
            }
        }
        #expect(zero == "Kernel /dev/zero is not a regular file: name the file itself.")
    }

    /// What the root reads into memory for a request is bounded: an image larger than the limit
    /// is refused before it is read, an initrd larger than the partition's RAM too. Before: the
    /// whole file was read, however large.
    @Test func anOversizedImageIsRefusedBeforeItIsRead() throws {
        let (scheduler, _) = try Self.scheduler()
        let path = NSTemporaryDirectory() + "hv-large-\(UUID().uuidString)"
        let fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        #expect(fd >= 0 && ftruncate(fd, off_t(200 << 20)) == 0)
        close(fd)
        defer { unlink(path) }
        #expect(throws: RootError.invalidRequest("Kernel \(path) is 200 MiB, more than the 128 MiB the root reads for it.")) {
            try scheduler.create(Self.linux("alpha", kernel: path))
        }
        let image = try Self.imageFile()
        defer { unlink(image) }
        let kernelFD = open(image, O_RDONLY)
        close(kernelFD)
        #expect(throws: RootError.invalidRequest("Initrd \(path) is 200 MiB, more than the 16 MiB the root reads for it.")) {
            try scheduler.create(Self.linux("beta", kernel: image, initrd: path))
        }
    }

    /// Files a request names are opened with the requester's rights: a user the API admits
    /// cannot have the root read (or hand the parent) a file that user could not open. Before:
    /// the root opened every path with its own rights.
    @Test(.enabled(if: isRoot, "needs root to act for another user"))
    func aRequesterCannotHaveTheRootReadAFileTheyCannotRead() throws {
        let (scheduler, kernel) = try Self.scheduler()
        let image = try Self.imageFile()
        defer { unlink(image) }
        chmod(image, 0o600)
        let stranger = UserIdentity(uid: 65534, gid: 65534)
        #expect(throws: RootError.invalidRequest("""
            Guest image \(image) cannot be opened by uid 65534: Permission denied (errno 13); check the path and its \
            permissions.
            """)) {
            try scheduler.create(Self.configuration("alpha", image: image), requester: stranger)
        }
        // Made readable to that user, the same request succeeds.
        chmod(image, 0o644)
        let info = try MockKernel.$current.withValue(kernel) { () throws(RootError) in
            try scheduler.create(Self.configuration("alpha", image: image), requester: stranger)
        }
        #expect(info.state == "created")
    }

    /// The same through the API: the root tells who sent the request from the socket (SO_PEERCRED).
    @Test(.enabled(if: isRoot, "needs root to act as another user"))
    func theAPIOpensFilesWithTheRightsOfWhoeverAsked() async throws {
        let (scheduler, _) = try Self.scheduler()
        let directory = try SocketDirectory()
        let socket = "\(directory.path)/root.sock"
        let application = ManagementServer.makeApplication(scheduler: scheduler, socketPath: socket, logger: quietLogger)
        let server = Task { try await application.runService(gracefulShutdownSignals: []) }
        defer { server.cancel() }
        #expect(await eventuallyAsync { FileManager.default.fileExists(atPath: socket) })
        chmod(socket, 0o666)  // as an API group would allow
        let image = try Self.imageFile()
        defer { unlink(image) }
        chmod(image, 0o600)
        let body = try JSONEncoder().encode(Self.configuration("alpha", image: image))
        let answer = try ThreadIdentity.asUser(UserIdentity(uid: 65534, gid: 65534)) {
            RawHTTP.request(socket: socket, method: "POST", path: "/v1/partitions", body: Array(body))
        }
        #expect(answer?.status == 400, "\(String(describing: answer))")
        #expect(answer?.body.contains("cannot be opened by uid 65534: Permission denied") == true,
                "\(String(describing: answer))")
    }

    /// A configuration whose devices could not reach the parent in one control message is refused
    /// up front. Before: it was accepted, and handing the partition to the parent then tripped
    /// the socket's precondition and killed the root.
    @Test func aConfigurationTooLargeForOneControlMessageIsRefused() throws {
        let catalog = DeviceCatalog(DeviceRegistry.catalog.types + [NoteDevice.self])
        let (scheduler, _) = try Self.scheduler(catalog: catalog)
        let image = try Self.imageFile()
        defer { unlink(image) }
        var configuration = Self.configuration("alpha", image: image)
        configuration.devices = (0..<DeviceCatalog.maximumDevices).map { _ in
            DeviceConfiguration(kind: NoteDevice.kind, settings: ["note": .string(String(repeating: "x", count: 15_000))])
        }
        #expect(configuration.problem(catalog: catalog) == nil, "the catalog alone accepts it")
        do throws(RootError) {
            _ = try scheduler.create(configuration)
            Issue.record("accepted")
        } catch {
            guard case .invalidRequest(let sentence) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(sentence.contains("more than the 65536 one control message carries"), "\(sentence)")
        }
    }

    /// The facts a parent reports about a partition are bounded (the bench names them after
    /// sizes its guest picks). Before: every new key was kept.
    @Test func theFactsAParentReportsAreBounded() throws {
        let (scheduler, kernel) = try Self.scheduler()
        let image = try Self.imageFile()
        defer { unlink(image) }
        _ = try MockKernel.$current.withValue(kernel) { () throws(RootError) in
            try scheduler.create(Self.configuration("alpha", image: image))
        }
        let partition = try scheduler.managed("alpha")
        for round in 0..<10 {
            partition.merge(facts: Dictionary(uniqueKeysWithValues: (0..<256).map {
                ("bench.throughput.\(round * 256 + $0).messages", String(repeating: "9", count: round == 0 ? 2000 : 4))
            }))
        }
        let status = try scheduler.info("alpha").status
        #expect(status.count == BoundedFacts.capacity)
        #expect(status.values.allSatisfy { $0.utf8.count <= BoundedFacts.valueLimit })
        // Known keys still update.
        let known = try #require(status.keys.sorted().first)
        partition.merge(facts: [known: "1"])
        #expect(try scheduler.info("alpha").status[known] == "1")
    }

    /// A guest printing without pause reaches the root's log at a bounded rate (its console log
    /// keeps the lines). Before: every line was logged, and a guest could fill the host's disk.
    @Test func aGuestFloodingItsConsoleReachesTheRootsLogAtABoundedRate() throws {
        let counter = LineCounter()
        let logger = Logger(label: "test") { _ in counter }
        let (scheduler, kernel) = try Self.scheduler(logger: logger)
        let image = try Self.imageFile()
        defer { unlink(image) }
        _ = try MockKernel.$current.withValue(kernel) { () throws(RootError) in
            try scheduler.create(Self.configuration("alpha", image: image))
        }
        let partition = try scheduler.managed("alpha").partition
        let before = counter.lines(containing: "[alpha]")
        let started = MonotonicClock.nanoseconds()
        for index in 0..<5000 { scheduler.partition(partition, consoleLine: "line \(index)") }
        let logged = counter.lines(containing: "[alpha]") - before
        // The burst, what the rate refills while the flood lasts (long on a loaded machine), and
        // the notes of lines held back.
        let seconds = Double(MonotonicClock.nanoseconds() - started) / 1e9
        #expect(logged <= Int(LogRateLimit.burst + LogRateLimit.rate * seconds) + 10, "\(logged) lines logged in \(seconds) s")
        #expect(logged >= 100)
    }

    /// A partition's console log is bounded in bytes as well as lines. Before: 2000 lines of any
    /// length up to 4 KiB each (8 MiB per partition).
    @Test func theConsoleLogIsBoundedInBytes() {
        let log = ConsoleLog()
        let line = String(repeating: "x", count: 10_000)
        for _ in 0..<600 { log.append(line: line) }
        let bytes = log.snapshot.reduce(0) { $0 + $1.utf8.count }
        #expect(bytes <= log.byteCapacity)
        #expect(log.snapshot.allSatisfy { $0.utf8.count <= ConsoleLog.lineLimit })
    }

    /// What a guest prints reaches the root's log and a user's terminal as printable text: a
    /// newline in a debug-port line or a crash message cannot forge another log line (of the
    /// root's, or another partition's), nor an escape sequence drive the terminal. Before, both
    /// went through as they were.
    @Test func theConsoleKeepsOnlyPrintableText() {
        let log = ConsoleLog()
        let forged = log.append(line: "ok\n2026-12-06T03:00:00+0000 info root: [beta] partition beta is stopped\u{1B}[2J\r\u{9B}")
        #expect(!forged.unicodeScalars.contains { $0.value < 0x20 && $0 != "\t" || (0x7F...0x9F).contains($0.value) }, "\(forged)")
        #expect(forged.hasPrefix("ok\\u{a}2026") && forged.contains("\\u{1b}[2J"))
        #expect(log.append(line: "tab\tand ünïcode stay") == "tab\tand ünïcode stay")
        let lines = log.append(bytes: Array("one\u{1B}]0;title\u{07}\r\ntwo\n".utf8))
        #expect(lines == ["one\\u{1b}]0;title\\u{7}", "two"])
        #expect(log.snapshot.allSatisfy { !$0.unicodeScalars.contains { $0.value < 0x20 && $0 != "\t" } })
        // Escapes make a line longer; it is still cut to the limit.
        let long = log.append(line: String(repeating: "\u{1B}", count: ConsoleLog.lineLimit))
        #expect(long.utf8.count <= ConsoleLog.lineLimit)
    }

    /// The parent may intercept at most 64 port ranges of a partition (each guest port access
    /// walks them). Before: one range per port, 65535 of them, was accepted.
    @Test func aParentCannotInterceptMoreThan64PortRanges() throws {
        let (scheduler, kernel) = try Self.scheduler()
        let image = try Self.imageFile()
        defer { unlink(image) }
        _ = try MockKernel.$current.withValue(kernel) { () throws(RootError) in
            try scheduler.create(Self.configuration("alpha", image: image))
        }
        let partition = try scheduler.managed("alpha").partition
        for port in 0..<UInt16(PortInterceptLimit.ranges) {
            try partition.interceptPorts((0x1000 + port)..<(0x1001 + port), with: NoPorts())
        }
        #expect(throws: PartitionError.self) { try partition.interceptPorts(0x2000..<0x2001, with: NoPorts()) }
    }

    /// The root keeps a bounded number of partitions; past it, creation is a 409 with the fix.
    /// Before: an API user could create partitions until the host ran out.
    @Test func theRootKeepsABoundedNumberOfPartitions() throws {
        let kernel = MockKernel()
        kernel.respond(to: CKVM_GET_TSC_KHZ) { _, _ in .success(2_000_000) }
        kernel.respond(to: CKVM_GET_MSRS) { _, pointer in .success(Int32(pointer?.load(as: kvm_msrs.self).nmsrs ?? 0)) }
        let scheduler = try MockKernel.$current.withValue(kernel) {
            try RootScheduler(catalog: DeviceRegistry.catalog, logger: quietLogger, partitionLimit: 3)
        }
        let image = try Self.imageFile()
        defer { unlink(image) }
        for name in ["a", "b", "c"] {
            _ = try MockKernel.$current.withValue(kernel) { () throws(RootError) in
                try scheduler.create(Self.configuration(name, image: image))
            }
        }
        do {
            _ = try MockKernel.$current.withValue(kernel) { () throws(RootError) in
                try scheduler.create(Self.configuration("d", image: image))
            }
            Issue.record("a fourth partition was created")
        } catch let error as RootError {
            #expect(error.status == 409)
            #expect(error.description.contains("holds 3 partitions"))
        }
        try scheduler.delete("a")
        _ = try MockKernel.$current.withValue(kernel) { () throws(RootError) in
            try scheduler.create(Self.configuration("d", image: image))
        }
    }
}

/// A device type with a free-form setting, to build configurations of any size.
enum NoteDevice: DeviceType {
    struct Settings: Codable, Sendable, Equatable { var note: String }
    static let kind = "note"
    static let summary = "a test device with a note"
    static let bus = DeviceBus.vmbus(classID: GUID(0x1234_5678, 0, 0, 1))
    static let maximumPerPartition = 64
}

struct NoPorts: PortInterceptor {
    func write(partition: Partition, vp: Int, port: UInt16, size: Int, value: UInt32) {}
    func read(partition: Partition, vp: Int, port: UInt16, size: Int) -> UInt32 { 0 }
}

/// A blocking HTTP/1.1 client over a Unix socket, usable from a thread that acts as another user.
enum RawHTTP {
    static func request(socket path: String, method: String, path target: String, body: [UInt8])
        -> (status: Int, body: String)?
    {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path.utf8.prefix($0.count - 1)) }
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else { return nil }
        let head = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
        let request = Array(head.utf8) + body
        guard request.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == request.count else { return nil }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            response += buffer[0..<count]
        }
        let text = String(decoding: response, as: UTF8.self)
        let parts = text.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        let bodyText = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
        return (status, bodyText)
    }
}

extension RootBoundsTests {
    /// A request body nested past Foundation's own limit (an unterminated run of 513 `[`: found by
    /// the `management-api` fuzz target) is refused with a 400, on every route that takes a body,
    /// and in UTF-16 too. Before: JSONDecoder trapped computing its error's location, and the
    /// root died (PATCH …/cpu and POST /v1/switches skipped the check, and UTF-16 passed it).
    @Test func aDeeplyNestedBodyIsRefusedNotFatal() async throws {
        let (scheduler, _) = try Self.scheduler()
        let directory = try SocketDirectory()
        let socket = "\(directory.path)/root.sock"
        let application = ManagementServer.makeApplication(scheduler: scheduler, socketPath: socket, logger: quietLogger)
        let server = Task { try await application.runService(gracefulShutdownSignals: []) }
        defer { server.cancel() }
        let client = ManagementClient(socketPath: socket, timeout: .seconds(30))
        #expect(await eventuallyAsync { FileManager.default.fileExists(atPath: socket) })
        // The same in UTF-16LE behind a string whose character holds a quote byte (U+2241 is
        // 41 22): a byte scan that took it for UTF-8 saw the brackets inside a string.
        let utf16 = Data([0x5B, 0x00, 0x22, 0x00, 0x41, 0x22, 0x22, 0x00, 0x2C, 0x00]
                         + [UInt8](repeating: 0, count: 1024).enumerated().map { $0.offset % 2 == 0 ? 0x5B : 0 })
        for body in [Data(String(repeating: "[", count: 513).utf8), utf16] {
            for path in ["/v1/partitions", "/v1/partitions/alpha/devices", "/v1/partitions/alpha/actions", "/v1/switches"] {
                let response = try await client.send(.POST, path, body: body)
                #expect(response.status == 400, "\(path)")
                if !path.hasSuffix("actions") && !path.hasSuffix("switches") {
                    #expect(String(decoding: response.body, as: UTF8.self).contains("at most \(JSONNesting.limit) deep"), "\(path)")
                }
            }
            let put = try await client.send(.PUT, "/v1/partitions/alpha/devices/bench", body: body)
            #expect(put.status == 400)
            let patch = try await client.send(.PATCH, "/v1/partitions/alpha/cpu", body: body)
            #expect(patch.status == 400)
        }
        // The root still answers.
        #expect(try await client.request(.GET, "/v1/root", as: RootInfo.self).partitions == 0)
    }
}

extension RootBoundsTests {
    /// A guest's string read (`rep insb`) of a port whose parent answers slowly, or not at all,
    /// holds its processor for a bounded time, and not at all once the partition is asked to
    /// stop. Before: every element waited for its answer (up to 5 s each), so a 4096-byte read
    /// could hold the processor, and a stop that joins it, for hours.
    @Test func aStringReadOfASlowPortHoldsItsProcessorForABoundedTime() throws {
        let (scheduler, kernel) = try Self.scheduler()
        let image = try Self.imageFile()
        defer { unlink(image) }
        _ = try MockKernel.$current.withValue(kernel) { () throws(RootError) in
            try scheduler.create(Self.configuration("alpha", image: image))
        }
        let partition = try scheduler.managed("alpha").partition
        let ports = SlowPorts(milliseconds: 20)
        try partition.interceptPorts(0x3F8..<0x400, with: ports)
        let resources = try #require(partition.resources)
        let exits = ExitHandler(partition: partition, resources: resources, processor: resources.processors[0])
        _ = exits.handle(.portIO(PortAccess(port: 0x3F8, isWrite: false, size: 1, count: 4096, data: [])))
        let asked = ports.reads.load(ordering: .relaxed)
        #expect(asked >= 1 && asked < 4096, "\(asked) elements asked for")
        partition.requestExit(final: .stopped(reason: "test"))
        _ = exits.handle(.portIO(PortAccess(port: 0x3F8, isWrite: false, size: 1, count: 4096, data: [])))
        #expect(ports.reads.load(ordering: .relaxed) == asked, "a partition asked to stop asks the parent nothing more")
    }
}

/// Port reads that take `milliseconds` each, as a parent that does not answer makes them.
final class SlowPorts: PortInterceptor {
    let reads = Atomic<Int>(0)
    let milliseconds: Int

    init(milliseconds: Int) { self.milliseconds = milliseconds }

    func write(partition: Partition, vp: Int, port: UInt16, size: Int, value: UInt32) {}

    func read(partition: Partition, vp: Int, port: UInt16, size: Int) -> UInt32 {
        reads.wrappingAdd(1, ordering: .relaxed)
        usleep(useconds_t(milliseconds * 1000))
        return 0xFF
    }
}
