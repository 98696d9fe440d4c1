import Foundation
import Glibc
import LinuxSupport
@testable import RootScheduler
import Testing

/// The root's cache of Embedded guest images (`HostFacts.image`): what it checks, reads and
/// keeps is the one file it opened with the requester's rights.
@Suite("Guest image cache")
struct ImageCacheTests {
    /// A file swapped in at the path after it was opened is not what is read or cached. Before:
    /// the path was opened again to read, so the bytes of the second file were kept under the
    /// first one's identity.
    @Test func theFileOpenedIsTheFileReadAndCached() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hv-image-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/guest.elf"
        let first = [UInt8](repeating: 1, count: 4096)
        let second = [UInt8](repeating: 2, count: 4096)
        try Data(first).write(to: URL(fileURLWithPath: path))
        try Data(second).write(to: URL(fileURLWithPath: "\(directory)/other.elf"))

        let facts = HostFacts()
        let open: (String) throws(RootError) -> OwnedDescriptor = { path throws(RootError) in
            try HostFiles.open(path, as: nil, what: "Guest image", fix: "")
        }
        let read = { (opened: OwnedDescriptor) throws(RootError) -> [UInt8] in
            // The path now names another file.
            _ = rename("\(directory)/other.elf", path)
            return try HostFiles.read(opened, path: path, what: "Guest image", limit: HostFiles.imageLimit)
        }
        #expect(try facts.image(at: path, reader: nil, open: open, read: read) == first)
        // The next request opens what the path names now, and is not served the first file.
        let again = try facts.image(at: path, reader: nil, open: open) { opened throws(RootError) in
            try HostFiles.read(opened, path: path, what: "Guest image", limit: HostFiles.imageLimit)
        }
        #expect(again == second)
    }
}
