import Foundation
import Subprocess
import SystemPackage

/// Builds the Embedded Swift guests in `Partitions/` with the toolchain that builds this
/// package: shared protocol modules from `Sources/` and the guest's own modules are compiled
/// for `x86_64-unknown-none-elf`, then linked with `ld.lld` and the guest's linker script.
///
/// Results are cached under `.build/guests/` by a hash of every input, so an unchanged guest
/// costs one hash of its sources.
public struct GuestBuilder: Sendable {
    /// The package root (the directory holding Package.swift).
    public let packageRoot: String
    public let toolchain: Toolchain

    /// How a guest is built, read from `Partitions/<guest>/guest.json`.
    public struct Manifest: Codable, Sendable {
        /// The Swift modules, compiled in this order (each may import those before it).
        public var modules: [Module]
        public var assembly: [String]
        public var c: [String]
        public var linkerScript: String

        /// A Swift module: its name and its folder, relative to the package root.
        public struct Module: Codable, Sendable {
            public var name: String
            public var path: String
        }
    }

    /// Compiler flags for every Swift module of a guest.
    public static let swiftFlags = [
        "-target", "x86_64-unknown-none-elf",
        "-enable-experimental-feature", "Embedded",
        "-enable-experimental-feature", "Extern",
        "-wmo", "-parse-as-library", "-O",
        "-Xcc", "-mno-red-zone",
        "-Xfrontend", "-disable-stack-protector",
        "-Xfrontend", "-function-sections",
    ]

    public init(packageRoot: String, toolchain: Toolchain) {
        self.packageRoot = packageRoot
        self.toolchain = toolchain
    }

    /// A builder for the package containing the current directory (or `HV_PACKAGE_ROOT`).
    public static func forCurrentPackage() throws(GuestBuildError) -> GuestBuilder {
        GuestBuilder(packageRoot: try locatePackageRoot(), toolchain: try Toolchain.locate())
    }

    /// Finds the package root: `HV_PACKAGE_ROOT`, or the nearest ancestor of the working
    /// directory that has both Package.swift and Partitions/.
    public static func locatePackageRoot(from start: String = FileManager.default.currentDirectoryPath)
        throws(GuestBuildError) -> String
    {
        if let root = ProcessInfo.processInfo.environment["HV_PACKAGE_ROOT"] { return root }
        var directory = URL(fileURLWithPath: start).standardizedFileURL
        while true {
            let manifest = directory.appendingPathComponent("Package.swift").path
            let partitions = directory.appendingPathComponent("Partitions").path
            if FileManager.default.fileExists(atPath: manifest) && FileManager.default.fileExists(atPath: partitions) {
                return directory.path
            }
            let parent = directory.deletingLastPathComponent()
            if parent.path == directory.path {
                throw .packageNotFound(start)
            }
            directory = parent
        }
    }

    /// Builds guest `name` (a directory under `Partitions/`) if its inputs changed.
    /// - Returns: the path of the linked ELF image.
    public func build(guest name: String = "Guest") async throws(GuestBuildError) -> String {
        let guestDirectory = "\(packageRoot)/Partitions/\(name)"
        let manifest = try loadManifest(guestDirectory)
        let moduleSources = try manifest.modules.map { module throws(GuestBuildError) in
            (module.name, try swiftFiles(in: "\(packageRoot)/\(module.path)"))
        }
        let otherInputs = (manifest.assembly + manifest.c + [manifest.linkerScript, "guest.json"]).map { "\(guestDirectory)/\($0)" }
        let digest = try Self.digest(of: moduleSources.flatMap(\.1) + otherInputs,
                                     extra: Self.swiftFlags.joined(separator: " ") + toolchain.swiftc)
        let output = "\(packageRoot)/.build/guests/\(name)-\(digest)"
        let image = "\(output)/guest.elf"
        if FileManager.default.fileExists(atPath: image) { return image }
        // Tests and commands in one process often ask for the same guest at once: the first
        // caller builds, the others await its result.
        return try await Self.inFlight.run(key: output) { () async throws(GuestBuildError) -> String in
            if FileManager.default.fileExists(atPath: image) { return image }
            try await buildFresh(name: name, manifest: manifest, guestDirectory: guestDirectory,
                                 moduleSources: moduleSources, output: output)
            return image
        }
    }

    private static let inFlight = SingleFlight<String, GuestBuildError>()

    private func buildFresh(
        name: String, manifest: Manifest, guestDirectory: String, moduleSources: [(String, [String])], output: String
    ) async throws(GuestBuildError) {
        let work = "\(output).partial-\(ProcessInfo.processInfo.processIdentifier)-\(UInt64.random(in: 0...UInt64.max))"
        try? FileManager.default.removeItem(atPath: work)
        do {
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        } catch {
            throw .io("create \(work): \(error.localizedDescription)")
        }
        do throws(GuestBuildError) {
            try await compileAndLink(name: name, manifest: manifest, guestDirectory: guestDirectory,
                                     moduleSources: moduleSources, work: work)
        } catch {
            try? FileManager.default.removeItem(atPath: work)
            throw error
        }
        try Self.publish(work, as: output)
    }

    /// Moves a finished build directory to its cache path with one `rename(2)`.
    ///
    /// Another process may build the same guest at the same time. `rename` never replaces a
    /// non-empty directory, so whichever build lands first stays, and an image path already
    /// handed out keeps existing; the loser discards its copy. An output directory without an
    /// image (left by hand, never by this code) is moved aside first.
    static func publish(_ work: String, as output: String) throws(GuestBuildError) {
        let image = "\(output)/guest.elf"
        for attempt in 0..<2 {
            if rename(work, output) == 0 { return }
            let error = errno
            if FileManager.default.fileExists(atPath: image) {
                try? FileManager.default.removeItem(atPath: work)
                return
            }
            guard attempt == 0, error == ENOTEMPTY || error == EEXIST else {
                throw .io("rename \(work) to \(output): \(String(cString: strerror(error))) (errno \(error))")
            }
            let stale = "\(output).stale-\(UInt64.random(in: 0...UInt64.max))"
            if rename(output, stale) == 0 { try? FileManager.default.removeItem(atPath: stale) }
        }
        throw .io("rename \(work) to \(output): the directory keeps reappearing without an image")
    }

    private func compileAndLink(
        name: String, manifest: Manifest, guestDirectory: String, moduleSources: [(String, [String])], work: String
    ) async throws(GuestBuildError) {
        var objects: [String] = []
        for (module, sources) in moduleSources {
            let object = "\(work)/\(module).o"
            try await run(toolchain.swiftc, Self.swiftFlags + [
                "-I", work, "-module-name", module,
                "-emit-module", "-emit-module-path", "\(work)/\(module).swiftmodule",
                "-c", "-o", object,
            ] + sources, what: "compile module \(module)")
            objects.append(object)
        }
        for file in manifest.assembly + manifest.c {
            let object = "\(work)/\((file as NSString).lastPathComponent).o"
            try await run(toolchain.clang, ["--target=x86_64-unknown-none-elf", "-ffreestanding", "-O2",
                                            "-c", "\(guestDirectory)/\(file)", "-o", object], what: "compile \(file)")
            objects.append(object)
        }
        try await run(toolchain.linker, ["--gc-sections", "-T", "\(guestDirectory)/\(manifest.linkerScript)",
                                         "-o", "\(work)/guest.elf"] + objects + toolchain.embeddedLibraries,
                      what: "link \(name)")
    }

    private func loadManifest(_ directory: String) throws(GuestBuildError) -> Manifest {
        let path = "\(directory)/guest.json"
        guard let data = FileManager.default.contents(atPath: path) else { throw .missingGuest(directory) }
        do {
            return try JSONDecoder().decode(Manifest.self, from: data)
        } catch {
            throw .invalidManifest(path, "\(error)")
        }
    }

    private func swiftFiles(in directory: String) throws(GuestBuildError) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
            throw .missingGuest(directory)
        }
        let files = names.filter { $0.hasSuffix(".swift") }.sorted().map { "\(directory)/\($0)" }
        if files.isEmpty { throw .missingGuest(directory) }
        return files
    }

    private func run(_ executable: String, _ arguments: [String], what: String) async throws(GuestBuildError) {
        let failure: String?
        do {
            let result = try await Subprocess.run(.path(FilePath(executable)), arguments: Arguments(arguments),
                                                  output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
            failure = result.terminationStatus.isSuccess ? nil : result.standardError + result.standardOutput
        } catch {
            throw .toolFailed(what, "could not run \(executable): \(error)")
        }
        if let failure { throw .toolFailed(what, failure) }
    }

    /// FNV-1a over the inputs' paths and contents, as 16 hex digits.
    static func digest(of files: [String], extra: String) throws(GuestBuildError) -> String {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        func mix(_ bytes: some Sequence<UInt8>) {
            for byte in bytes {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01B3
            }
        }
        mix(extra.utf8)
        for file in files.sorted() {
            guard let data = FileManager.default.contents(atPath: file) else { throw .io("read \(file)") }
            mix(file.utf8)
            mix(data)
        }
        let text = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - text.count) + text
    }
}

/// The compilers and libraries a guest build uses, all from the running Swift toolchain.
public struct Toolchain: Sendable {
    public var swiftc: String
    public var clang: String
    public var linker: String
    /// The Embedded Unicode tables and compiler-rt builtins (128-bit division).
    public var embeddedLibraries: [String]

    /// Finds `swiftc` on PATH (or in `SWIFT_EXEC`'s directory) and the rest beside it.
    public static func locate() throws(GuestBuildError) -> Toolchain {
        let environment = ProcessInfo.processInfo.environment
        var candidates: [String] = []
        if let exec = environment["SWIFT_EXEC"] { candidates.append(exec) }
        for directory in (environment["PATH"] ?? "").split(separator: ":") {
            candidates.append("\(directory)/swiftc")
        }
        candidates.append("/opt/swift/usr/bin/swiftc")
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw .toolchainNotFound("no swiftc on PATH")
        }
        // swiftc is a symlink to swift-driver, which dispatches on its own name: keep the link,
        // but find the toolchain through its target.
        let swiftc = found
        let bin = (URL(fileURLWithPath: found).resolvingSymlinksInPath().path as NSString).deletingLastPathComponent
        let usr = (bin as NSString).deletingLastPathComponent
        let unicode = "\(usr)/lib/swift/embedded/x86_64-unknown-none-elf/libswiftUnicodeDataTables.a"
        let clangLib = "\(usr)/lib/clang"
        let builtins = ((try? FileManager.default.contentsOfDirectory(atPath: clangLib)) ?? [])
            .map { "\(clangLib)/\($0)/lib/linux/libclang_rt.builtins-x86_64.a" }
            .first { FileManager.default.fileExists(atPath: $0) }
        let toolchain = Toolchain(swiftc: swiftc, clang: "\(bin)/clang", linker: "\(bin)/ld.lld",
                                  embeddedLibraries: [unicode] + (builtins.map { [$0] } ?? []))
        for tool in [toolchain.clang, toolchain.linker] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw .toolchainNotFound("the Swift toolchain at \(usr) has no \(tool)")
        }
        guard FileManager.default.fileExists(atPath: unicode), builtins != nil else {
            throw .toolchainNotFound("the Swift toolchain at \(usr) lacks Embedded Swift support for x86_64-unknown-none-elf")
        }
        return toolchain
    }
}

/// Why a guest could not be built.
public enum GuestBuildError: Error, CustomStringConvertible {
    case packageNotFound(String)
    case toolchainNotFound(String)
    case missingGuest(String)
    case invalidManifest(String, String)
    case toolFailed(String, String)
    case io(String)

    public var description: String {
        switch self {
        case .packageNotFound(let start):
            "No hv package above \(start): run hv from the repository (or set HV_PACKAGE_ROOT)."
        case .toolchainNotFound(let reason):
            "Cannot build guests: \(reason). Install Swift 6.3 with Embedded Swift support and put swiftc on PATH."
        case .missingGuest(let path):
            "Guest sources are missing at \(path)."
        case .invalidManifest(let path, let reason):
            "Invalid guest manifest \(path): \(reason)"
        case .toolFailed(let what, let output):
            "Guest build failed to \(what):\n\(output)"
        case .io(let what):
            "Guest build could not \(what)."
        }
    }
}
