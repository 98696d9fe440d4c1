import DeviceModel
import Foundation
import Glibc
import ManagementAPI
import Synchronization
import Testing

@Suite("Partition configuration files")
struct ConfigurationFileTests {
    static let catalog = DeviceCatalog([])

    /// A configuration path naming a FIFO (or a device) is refused at once. Before: the client
    /// read it until EOF — forever for a FIFO nobody writes.
    @Test func aFIFOIsRefusedWithoutBlocking() throws {
        let fifo = NSTemporaryDirectory() + "hv-config-fifo-\(UUID().uuidString)"
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let outcome = Mutex<String?>(nil)
        let thread = Thread {
            do {
                _ = try PartitionConfiguration.load(path: fifo, catalog: Self.catalog)
                outcome.withLock { $0 = "loaded" }
            } catch {
                outcome.withLock { $0 = "\(error)" }
            }
        }
        thread.start()
        let deadline = Date().addingTimeInterval(20)
        while outcome.withLock({ $0 }) == nil && Date() < deadline { usleep(1000) }
        #expect(outcome.withLock { $0 } == "Invalid partition configuration \(fifo): it is not a regular file.")
    }

    /// A configuration larger than 1 MiB is refused before it is read.
    @Test func anOversizedFileIsRefused() throws {
        let path = NSTemporaryDirectory() + "hv-config-large-\(UUID().uuidString).json"
        let fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        #expect(fd >= 0 && ftruncate(fd, off_t(2 << 20)) == 0)
        close(fd)
        defer { unlink(path) }
        #expect(throws: ConfigurationError.self) { try PartitionConfiguration.load(path: path, catalog: Self.catalog) }
        do {
            _ = try PartitionConfiguration.load(path: path, catalog: Self.catalog)
        } catch {
            #expect("\(error)".contains("more than the 1048576 a configuration may have"))
        }
    }
}

@Suite("JSON nesting pre-check")
struct JSONNestingTests {
    @Test func depthCountsArraysAndObjectsButNotStrings() {
        #expect(JSONNesting.isShallow(Array("{\"a\": [[1], {\"b\": 2}]}".utf8)))
        #expect(JSONNesting.isShallow(Array((String(repeating: "[", count: 64) + String(repeating: "]", count: 64)).utf8)))
        #expect(!JSONNesting.isShallow(Array(String(repeating: "[", count: 65).utf8)))
        #expect(!JSONNesting.isShallow(Array(String(repeating: "{\"a\":", count: 65).utf8)))
        #expect(JSONNesting.isShallow(Array(("\"" + String(repeating: "[", count: 1000) + "\"").utf8)))
        #expect(JSONNesting.isShallow(Array(("\"\\\"" + String(repeating: "[", count: 1000) + "\"").utf8)), "escaped quote")
    }

    /// A configuration file nested too deep is refused before JSONDecoder, which traps on some.
    @Test func aConfigurationNestedTooDeepIsRefused() throws {
        let path = NSTemporaryDirectory() + "hv-config-deep-\(UUID().uuidString).json"
        try Data(String(repeating: "[", count: 513).utf8).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        do {
            _ = try PartitionConfiguration.load(path: path, catalog: DeviceCatalog([]))
            Issue.record("loaded")
        } catch {
            #expect("\(error)".contains("more than \(JSONNesting.limit) deep"))
        }
    }
}
