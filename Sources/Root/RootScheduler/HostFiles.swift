import Foundation
import Glibc
import LinuxSupport
import Privilege
import SystemPackage

/// Host files a management request names — guest images, kernels, initrds, device images —
/// opened with the rights of the user who sent the request, never the root's: the open happens
/// on a thread that carries the requester's file-system identity (`ThreadIdentity`), so the
/// kernel applies that user's permissions to every directory and file on the path, and a user
/// the API admits cannot have the root read or hand out a file that user could not open. Only
/// regular files (and block devices, for device images) are accepted, and what is read into
/// memory is bounded. Procfs magic links are not followed (`RequestedFile`): `/proc/self/fd/N`
/// leads to the root's own open files (another partition's RAM) whoever follows it.
enum HostFiles {
    /// The requester of a management request: nil is the root itself (in-process callers).
    typealias Requester = UserIdentity?

    /// Opens `path` for reading (and writing if `writable`) as `requester`; refuses anything but
    /// a regular file or, if `allowBlockDevice`, a block device. The descriptor is close-on-exec
    /// and blocking.
    /// - Parameters:
    ///   - what: what the file is for, capitalized ("Guest image"), for the error sentences.
    ///   - fix: what to do when it does not exist.
    ///   - noAccessTime: open with O_NOATIME when the requester may (they own the file, or hold
    ///     CAP_FOWNER), and without it otherwise: a disk image's access time says nothing a user
    ///     needs, and keeping it costs every guest read a timestamp check.
    static func open(_ path: String, writable: Bool = false, allowBlockDevice: Bool = false, noAccessTime: Bool = false,
                     as requester: Requester, what: String, fix: String) throws(RootError) -> OwnedDescriptor {
        let flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK
        let outcome: (fd: Int32, errno: Int32)
        do throws(PrivilegeError) {
            // O_NONBLOCK: a FIFO or a device must not hold the thread (and the request) at open.
            outcome = try ThreadIdentity.withFileSystemIdentity(of: requester ?? UserIdentity.current) {
                if noAccessTime {
                    // EPERM: the requester neither owns the file nor holds CAP_FOWNER; open it as
                    // any other file (a real refusal fails the same way below).
                    let fd = RequestedFile.open(path, flags: flags | OpenFlags.noAccessTime)
                    if fd >= 0 || Glibc.errno != EPERM { return (fd, fd < 0 ? Glibc.errno : 0) }
                }
                let fd = RequestedFile.open(path, flags: flags)
                return (fd, fd < 0 ? Glibc.errno : 0)
            }
        } catch {
            throw .invalidRequest("\(what) \(path) cannot be opened on behalf of uid \(requester?.uid ?? geteuid()): \(error)")
        }
        guard outcome.fd >= 0 else {
            let errno = Errno(rawValue: outcome.errno)
            if errno == .noSuchFileOrDirectory { throw .invalidRequest("\(what) \(path) does not exist: \(fix).") }
            if errno == .tooManySymbolicLinkLevels {
                throw .invalidRequest("\(what) \(path) cannot be opened: its path goes through a /proc link to open files "
                                      + "(or a loop of symbolic links), which the root does not follow for a request; name the file itself.")
            }
            throw .invalidRequest("\(what) \(path) cannot be opened\(requester.map { " by uid \($0.uid)" } ?? ""): "
                                  + "\(errno) (errno \(errno.rawValue)); check the path and its permissions.")
        }
        let descriptor = OwnedDescriptor(adopting: FileDescriptor(rawValue: outcome.fd))
        var status = stat()
        guard fstat(descriptor.rawValue, &status) == 0 else {
            throw .invalidRequest("\(what) \(path) cannot be inspected: \(Errno.current).")
        }
        let type = status.st_mode & S_IFMT
        // No path names a file with no link (a memfd, a deleted file): one reached anyway came
        // through a way around the path's permissions (`RequestedFile` on a kernel before 5.6).
        guard status.st_nlink > 0 else {
            throw .invalidRequest("\(what) \(path) is not a file any directory holds: name the file itself.")
        }
        guard type == S_IFREG || allowBlockDevice && type == S_IFBLK else {
            throw .invalidRequest("\(what) \(path) is not a regular file\(allowBlockDevice ? " or a block device" : ""): "
                                  + "name the file itself.")
        }
        let current = fcntl(descriptor.rawValue, F_GETFL)
        if current >= 0 { _ = fcntl(descriptor.rawValue, F_SETFL, current & ~O_NONBLOCK) }
        return descriptor
    }

    /// Reads the whole regular file `path` as `requester`, refusing one larger than `limit` bytes.
    static func read(_ path: String, as requester: Requester, what: String, fix: String, limit: Int) throws(RootError)
        -> [UInt8]
    {
        try read(open(path, as: requester, what: what, fix: fix), path: path, what: what, limit: limit)
    }

    /// Reads the whole regular file `descriptor` is open on (at `path`, for messages), refusing
    /// one larger than `limit` bytes.
    static func read(_ descriptor: OwnedDescriptor, path: String, what: String, limit: Int) throws(RootError) -> [UInt8] {
        var status = stat()
        guard fstat(descriptor.rawValue, &status) == 0 else {
            throw .invalidRequest("\(what) \(path) cannot be inspected: \(Errno.current).")
        }
        let size = Int(status.st_size)
        guard size <= limit else {
            throw .invalidRequest("\(what) \(path) is \(size >> 20) MiB, more than the \(limit >> 20) MiB the root reads for it.")
        }
        // At most `size` bytes: a file that grows meanwhile is read as it was.
        do throws(SystemError) {
            return try descriptor.readAll(upTo: size)
        } catch {
            throw .invalidRequest("\(what) \(path) cannot be read: \(error).")
        }
    }

    /// The most bytes the root reads for an Embedded guest's ELF image or a Linux kernel.
    static let imageLimit = 128 << 20
}
