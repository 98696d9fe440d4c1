import DeviceModel
import Glibc
import LinuxSupport
import SystemPackage

/// Opens the host resources a partition's devices need (`HostResource`), so the parent is
/// handed descriptors instead of paths.
enum HostResources {
    /// Opens every resource, in order; closes what it opened if one fails.
    static func open(_ resources: [HostResource]) throws(RootError) -> [OwnedDescriptor] {
        var opened: [OwnedDescriptor] = []
        for resource in resources {
            opened.append(try open(resource))
        }
        return opened
    }

    /// Opens one resource: a regular file or block device, close-on-exec.
    static func open(_ resource: HostResource) throws(RootError) -> OwnedDescriptor {
        switch resource {
        case .file(let path, let writable):
            let descriptor: FileDescriptor
            do throws(SystemError) {
                descriptor = FileDescriptor(rawValue: try retryingOnInterrupt("open \(path)") {
                    Glibc.open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
                })
            } catch {
                throw .invalidRequest("Cannot open \(path) for a device: \(error.errno) (errno \(error.errno.rawValue)); "
                                      + "check the path and its permissions.")
            }
            let owned = OwnedDescriptor(adopting: descriptor)
            var status = stat()
            guard fstat(owned.rawValue, &status) == 0,
                  status.st_mode & S_IFMT == S_IFREG || status.st_mode & S_IFMT == S_IFBLK else {
                throw .invalidRequest("\(path) is not a regular file or a block device, so it cannot back a device.")
            }
            return owned
        }
    }
}
