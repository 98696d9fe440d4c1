import Foundation
import Glibc

/// Reading a partition configuration file, which is input like any other: only a regular file,
/// and at most `limit` bytes of it (a FIFO or a device in its place would block the reader or
/// feed it without end).
enum ConfigurationFile {
    /// The largest configuration file read.
    static let limit = 1 << 20

    enum Failure: Error {
        case unreadable
        case notARegularFile
        case tooLarge(Int)
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
