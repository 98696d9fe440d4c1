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
            #expect("\(error)".contains("at most \(JSONNesting.limit) deep"))
        }
    }

    /// JSON given directly (`hv partition device add|set`'s argument) is checked the same way.
    @Test func jsonTextNestedTooDeepIsRefusedBeforeDecoding() throws {
        #expect(throws: JSONNesting.Refusal.self) {
            _ = try JSONNesting.decode([String: JSONValue].self, from: String(repeating: "[", count: 513))
        }
        #expect(try JSONNesting.decode([String: JSONValue].self, from: "{\"a\": [1]}") == ["a": .array([.number(1)])])
    }

    /// Text the scan cannot read as UTF-8 is refused: Foundation decodes UTF-16 and UTF-32
    /// (with or without a byte-order mark), whose brackets a byte scan does not count.
    @Test func textThatIsNotUTF8IsRefusedBeforeDecoding() {
        #expect(!JSONNesting.isShallow(Array("[1]".utf16).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }))
        #expect(!JSONNesting.isShallow([0xFF, 0xFE, 0x5B, 0x00, 0x5D, 0x00]))
        #expect(!JSONNesting.isShallow([0xFE, 0xFF, 0x00, 0x5B, 0x00, 0x5D]))
        #expect(JSONNesting.isShallow([0xEF, 0xBB, 0xBF] + Array("[1]".utf8)), "UTF-8 with its mark is UTF-8")
        #expect(JSONNesting.isShallow(Array("{\"name\": \"≁\"}".utf8)))
    }

    /// A switch configuration file is read as a partition's is: a regular file of at most 1 MiB,
    /// shallow UTF-8 JSON. Before, a FIFO in its place hung the client, /dev/zero fed it without
    /// end, and deep nesting trapped it.
    @Test func switchConfigurationFilesAreReadWithTheSameLimits() throws {
        let path = NSTemporaryDirectory() + "hv-switch-\(UUID().uuidString).json"
        defer { unlink(path) }
        try Data(String(repeating: "[", count: 513).utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: ConfigurationError.self) { try SwitchConfiguration.load(path: path) }
        unlink(path)
        #expect(mkfifo(path, 0o600) == 0)
        do {
            _ = try SwitchConfiguration.load(path: path)
            Issue.record("a FIFO was read")
        } catch {
            #expect("\(error)".contains("not a regular file"))
        }
        unlink(path)
        try Data(#"{"name": "lab", "kind": "private"}"#.utf8).write(to: URL(fileURLWithPath: path))
        #expect(try SwitchConfiguration.load(path: path).name == "lab")
    }
}
