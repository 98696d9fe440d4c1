import Foundation
import Glibc

/// Reading a configuration file (a partition's, a switch's), which is input like any other:
/// only a regular file, and at most `limit` bytes of it (a FIFO or a device in its place would
/// block the reader or feed it without end), checked by `JSONNesting` before it is decoded.
enum ConfigurationFile {
    /// The largest configuration file read.
    static let limit = 1 << 20

    enum Failure: Error {
        case unreadable
        case notARegularFile
        case tooLarge(Int)
    }

    /// Reads `path` and decodes it as a `T`; `what` names it in errors ("partition configuration").
    static func decode<T: Decodable>(_ type: T.Type, path: String, what: String) throws(ConfigurationError) -> T {
        let data: Data
        switch read(path) {
        case .success(let contents): data = contents
        case .failure(.unreadable): throw .unreadable(path, what: what)
        case .failure(.notARegularFile): throw .invalid(path, "it is not a regular file", what: what)
        case .failure(.tooLarge(let size)):
            throw .invalid(path, "it is \(size) bytes, more than the \(limit) a configuration may have", what: what)
        }
        guard JSONNesting.isShallow(data) else {
            throw .invalid(path, "it is not UTF-8 JSON nesting arrays and objects at most \(JSONNesting.limit) deep",
                           what: what)
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw .invalid(path, PartitionConfiguration.describe(error), what: what)
        }
    }

    static func read(_ path: String) -> Result<Data, Failure> {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { return .failure(.unreadable) }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { return .failure(.unreadable) }
        guard status.st_mode & S_IFMT == S_IFREG else { return .failure(.notARegularFile) }
        guard Int(status.st_size) <= limit else { return .failure(.tooLarge(Int(status.st_size))) }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: false)
        guard let data = try? handle.read(upToCount: Int(status.st_size)) else { return .success(Data()) }
        return .success(data)
    }
}
