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
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeMutableBytes { buffer in
                // SAFETY: [offset, count) lies inside `bytes`, which outlives the call.
                Glibc.read(fd, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            offset += count
        }
        return .success(Data(bytes.prefix(offset)))
    }
}
