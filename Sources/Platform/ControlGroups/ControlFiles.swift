import Glibc
import LinuxSupport
import SystemPackage

/// File-system calls on cgroup and /proc files, each failure a `ControlGroupError` naming the
/// path. Control files are small and written with one write(2) each, as the kernel expects
/// (kernel/cgroup/cgroup.c: cgroup_file_write parses one buffer per call).
enum ControlFiles {
    /// The most a control file read may return (a `tasks` file of a busy host is the largest).
    static let readLimit = 16 << 20

    static func read(_ path: String) throws(ControlGroupError) -> String {
        let descriptor = try open(path, flags: O_RDONLY)
        defer { close(descriptor) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { buffer in
                // SAFETY: `buffer` is the 4096-byte `chunk`, alive and exclusively borrowed for the call.
                Glibc.read(descriptor, buffer.baseAddress, buffer.count)
            }
            if count < 0 {
                if Errno.current == .interrupted { continue }
                throw .system(operation: "read", path: path, errno: .current)
            }
            if count == 0 { break }
            contents.append(contentsOf: chunk[0..<count])
            guard contents.count <= readLimit else {
                throw .malformed(path: path, content: "more than \(readLimit) bytes")
            }
        }
        return String(decoding: contents, as: UTF8.self)
    }

    /// Writes `text` with a single write(2).
    static func write(_ text: String, to path: String) throws(ControlGroupError) {
        let descriptor = try open(path, flags: O_WRONLY)
        defer { close(descriptor) }
        var bytes = Array(text.utf8)
        while true {
            let written = bytes.withUnsafeMutableBytes { buffer in
                // SAFETY: `buffer` is `bytes`, alive for the call; write(2) only reads it.
                Glibc.write(descriptor, buffer.baseAddress, buffer.count)
            }
            if written == bytes.count { return }
            if written < 0, Errno.current == .interrupted { continue }
            if written < 0 { throw .system(operation: "write \"\(text)\" to", path: path, errno: .current) }
            throw .system(operation: "write \"\(text)\" to (short write)", path: path, errno: .ioError)
        }
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    static func isWritable(_ path: String) -> Bool { access(path, W_OK) == 0 }

    /// Creates a directory; true if it was created, false if it was already there.
    @discardableResult
    static func makeDirectory(_ path: String) throws(ControlGroupError) -> Bool {
        if mkdir(path, 0o755) == 0 { return true }
        let error = Errno.current
        // An existing group is fine; an existing control file of that name (`tasks`) is not.
        if error == .fileExists, isDirectory(path) { return false }
        throw .system(operation: "create group", path: path, errno: error)
    }

    static func isDirectory(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR
    }

    static func removeDirectory(_ path: String) throws(ControlGroupError) {
        guard rmdir(path) != 0 else { return }
        throw .system(operation: "remove group", path: path, errno: .current)
    }

    /// The names of the subdirectories of `path` (a cgroup's child groups), sorted.
    static func subdirectories(of path: String) throws(ControlGroupError) -> [String] {
        guard let directory = opendir(path) else {
            throw .system(operation: "list", path: path, errno: .current)
        }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            guard entry.pointee.d_type == UInt8(DT_DIR) else { continue }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
                // SAFETY: readdir(3)'s entry stays valid until the next readdir on this stream, and
                // d_name is NUL-terminated within its fixed-size array; the name is copied out here.
                String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    private static func open(_ path: String, flags: Int32) throws(ControlGroupError) -> Int32 {
        while true {
            let descriptor = Glibc.open(path, flags | O_CLOEXEC)
            if descriptor >= 0 { return descriptor }
            if Errno.current == .interrupted { continue }
            throw .system(operation: flags == O_RDONLY ? "open" : "open for writing", path: path, errno: .current)
        }
    }
}

/// Joins path components with single slashes ("/a/" + "/b" is "/a/b"; "/" adds nothing).
func joinPath(_ base: String, _ components: String...) -> String {
    var path = base
    for component in components {
        let trimmed = component.split(separator: "/").joined(separator: "/")
        guard !trimmed.isEmpty else { continue }
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        path += (path == "/" ? "" : "/") + trimmed
    }
    return path
}
