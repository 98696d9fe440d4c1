import DeviceModel
import Glibc
import LinuxSupport
import Privilege

/// Opens the host resources a partition's devices need (`HostResource`), so the parent is
/// handed descriptors instead of paths. Files are opened with the requester's rights
/// (`HostFiles`); host network attachments need the privileges only root or the root's own
/// user hold.
enum HostResources {
    /// Opens every resource, in order; closes what it opened if one fails.
    static func open(_ resources: [HostResource], as requester: HostFiles.Requester = nil) throws(RootError)
        -> [OwnedDescriptor]
    {
        var opened: [OwnedDescriptor] = []
        for resource in resources {
            opened.append(try open(resource, as: requester))
        }
        return opened
    }

    /// Opens one resource, close-on-exec.
    static func open(_ resource: HostResource, as requester: HostFiles.Requester = nil) throws(RootError) -> OwnedDescriptor {
        switch resource {
        case .file(let path, let writable):
            return try HostFiles.open(path, writable: writable, allowBlockDevice: true, noAccessTime: true, as: requester,
                                      what: "Device file", fix: "check the path in the device's settings")
        case .tap(let name):
            try requireNetworkAdministrator(requester, for: resource)
            do throws(SystemError) {
                return try TAPDevice.create(name: name).descriptor
            } catch {
                throw .invalidRequest("Cannot open TAP \(name) for a device: \(error).")
            }
        }
    }

    /// Attaching to the host's networks needs CAP_NET_ADMIN: only root, or the user the root
    /// scheduler runs as, may ask for it.
    private static func requireNetworkAdministrator(_ requester: HostFiles.Requester, for resource: HostResource)
        throws(RootError)
    {
        guard let requester, requester.uid != 0, requester.uid != geteuid() else { return }
        throw .invalidRequest("Only root or uid \(geteuid()) may attach a device to \(resource); uid \(requester.uid) "
                              + "asked.")
    }
}
