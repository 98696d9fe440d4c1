import ArgumentParser
import DiskBackend
import Foundation

/// `hv disk create PATH --size 8G`: a new raw disk image, sparse (nothing is allocated until the
/// guest writes), for a partition's `"scsi"` or `"ide"` device.
struct DiskCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disk", abstract: "Make disk image files for partitions' disks.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a new sparse raw disk image.")
        @Argument(help: "The image file to create (it must not exist).") var path: String
        @Option(help: "Its size: bytes, or with K, M, G or T (binary units), a multiple of 4 KiB.") var size: String

        func run() async throws {
            guard let bytes = Self.bytes(size), bytes > 0, bytes % 4096 == 0 else {
                throw ValidationError("--size must be a positive multiple of 4 KiB, such as 512M or 8G (not \(size))")
            }
            do {
                let image = try DiskImage.create(at: path, size: bytes)
                print("\(image.path): \(bytes) bytes (sparse)")
            } catch {
                throw fail(error)
            }
        }

        /// "512M" → 536870912; `nil` for anything else.
        static func bytes(_ text: String) -> UInt64? {
            let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
            if let last = text.uppercased().last, let unit = units[last] {
                return UInt64(text.dropLast()).flatMap { $0.multipliedReportingOverflow(by: unit).overflow ? nil : $0 * unit }
            }
            return UInt64(text)
        }
    }
}
