import DeviceModel
import DiskBackend
import Foundation
import Glibc
import LinuxSupport
import StorageVSP
import SystemPackage
import Testing

@Suite("The SCSI controller as a device: settings, host files, adopted descriptors")
struct StorageDeviceTests {
    func decode(_ json: String) throws -> StorageSettings {
        try JSONDecoder().decode(StorageSettings.self, from: Data(json.utf8))
    }

    @Test("Settings decode with defaults, and every rule is checked")
    func settingsRules() throws {
        let minimal = try decode(#"{"disks": [{"path": "/a.img", "lun": 0}]}"#)
        #expect(minimal.problem == nil)
        #expect(minimal.disks[0].targetID == 0 && !minimal.disks[0].isReadOnly && !minimal.disks[0].isDirect)
        let cases: [(String, String)] = [
            (#"{"disks": [{"path": "a.img", "lun": 0}]}"#, "absolute"),
            (#"{"disks": [{"path": "/a.img", "lun": 255}]}"#, "lun must be 0-254"),
            (#"{"disks": [{"path": "/a.img", "lun": 0, "target": 2}]}"#, "target must be 0 or 1"),
            (#"{"disks": [{"path": "/a.img", "lun": 3}, {"path": "/b.img", "lun": 3}]}"#, "taken by another disk"),
            (#"{"disks": [{"path": "/a.img", "lun": 0, "model": "seventeen chars!!"}]}"#, "model must be 1-16"),
            (#"{"disks": [{"path": "/a.img", "lun": 0, "serial": "é"}]}"#, "printable ASCII"),
            (#"{"disks": [{"path": "/a.img", "lun": 0, "blockSize": 1024}]}"#, "512 or 4096"),
            (#"{"disks": [], "subChannels": 64}"#, "subChannels must be 0-63"),
            (#"{"disks": [], "maxTransferKiB": 6}"#, "multiple of 4"),
            // 4096 KiB from mid-page spans 1025 pages: more I/O vectors than one request may have.
            (#"{"disks": [], "maxTransferKiB": 4096}"#, "from 4 to 4092"),
        ]
        for (json, phrase) in cases {
            let problem = try decode(json).problem
            #expect(problem?.contains(phrase) == true, "\(json): \(problem ?? "no problem")")
        }
        let many = StorageSettings(disks: (0..<17).map { StorageSettings.Disk(path: "/d\($0)", lun: $0) })
        #expect(many.problem?.contains("more than the 16") == true)
        #expect(throws: DecodingError.self) { _ = try decode(#"{"disks": [{"path": "/a.img", "lun": 0, "readonly": true}]}"#) }
    }

    @Test("The root opens each disk's file, twice for an O_DIRECT disk, read-only for a read-only one")
    func resources() {
        let settings = StorageSettings(disks: [StorageSettings.Disk(path: "/a.img", lun: 0),
                                               StorageSettings.Disk(path: "/b.img", lun: 1, readOnly: true, direct: true)])
        #expect(settings.resources == [.file(path: "/a.img", writable: true), .file(path: "/b.img", writable: false),
                                       .file(path: "/b.img", writable: false)])
        #expect(StorageDevice.kind == "scsi" && StorageDevice.changeableWhileRunning && StorageDevice.hotPluggable)
    }

    @Test("An image adopts descriptors opened elsewhere: O_DIRECT set on the second, a read-only one refused for writing")
    func adoptedDescriptors() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("adopt.img")
        _ = try DiskImage.create(at: path, size: 1 << 20)
        func open(_ flags: Int32) throws -> OwnedDescriptor {
            let raw = Glibc.open(path, flags | O_CLOEXEC)
            guard raw >= 0 else { throw SystemError.current("open \(path)") }
            return OwnedDescriptor(adopting: FileDescriptor(rawValue: raw))
        }
        let image = try DiskImage(adopting: try open(O_RDWR), name: path)
        #expect(image.size == 1 << 20 && !image.isDirect && !image.isReadOnly)
        #expect(throws: SystemError.self) { _ = try DiskImage(adopting: try open(O_RDONLY), name: path, access: .readWrite) }
        let readOnly = try DiskImage(adopting: try open(O_RDONLY), name: path, access: .readOnly)
        #expect(readOnly.isReadOnly)
        #expect(throws: SystemError.self) { try readOnly.write(at: 0, from: [1, 2, 3]) }
        if directIOSupported(in: "/tmp") {
            let direct = try open(O_RDWR)
            let both = try DiskImage(adopting: try open(O_RDWR), direct: direct, name: path)
            #expect(both.isDirect && both.directAlignment >= 512)
            #expect(fcntl(direct.rawValue, F_GETFL) & 0o40000 != 0, "O_DIRECT is set on the second description")
            // Synchronous transfers through either descriptor see each other's data.
            try both.write(at: 4096, from: [UInt8](repeating: 0xAB, count: 4096), dataSync: true)
            var back = [UInt8](repeating: 0, count: 512)
            try image.read(at: 4096, into: &back)
            #expect(back == [UInt8](repeating: 0xAB, count: 512))
        }
    }
}
