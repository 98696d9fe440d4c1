import HyperV

/// A Linux bzImage, parsed for the 64-bit boot protocol (Docs/hyperv-interface.md §13.5;
/// Documentation/x86/boot.rst).
///
/// The file comes from a user, so every field that locates bytes is checked against the file
/// before it is used. The bytes themselves are kept, not copied: `kernel` and `setupHeader`
/// are views into `bytes`.
public struct BzImage: Sendable {
    /// The whole file.
    public let bytes: [UInt8]
    /// Real-mode setup sectors after the boot sector (`setup_sects`, with 0 read as 4).
    public let setupSectors: Int
    /// The boot protocol version, e.g. 0x020F for 2.15.
    public let protocolVersion: UInt16
    /// `loadflags` as found in the file.
    public let loadFlags: LoadFlags
    /// `xloadflags`; always contains `.kernel64`.
    public let xLoadFlags: XLoadFlags
    /// `kernel_alignment`: the alignment of a relocatable kernel's load address.
    public let kernelAlignment: UInt32
    /// `relocatable_kernel != 0`.
    public let isRelocatable: Bool
    /// `pref_address`: where the kernel wants to be loaded (LOAD_PHYSICAL_ADDR, 16 MiB on Debian).
    public let preferredAddress: UInt64
    /// `init_size`: bytes the kernel needs from its load address until it reads the memory map.
    public let initSize: UInt32
    /// `cmdline_size`: the longest command line, excluding the terminating NUL.
    public let commandLineSize: UInt32
    /// `initrd_addr_max`: the highest byte address the initrd may occupy.
    public let initrdAddressMax: UInt32
    /// The file offset of the protected-mode kernel, `(setupSectors + 1) * 512`.
    public let kernelOffset: Int
    /// The file offset one past the setup header's last byte, `0x202 + byte[0x201]`.
    public let setupHeaderEnd: Int

    /// The raw setup header, file bytes `0x1F1..<setupHeaderEnd`, to copy into the zero page.
    public var setupHeader: ArraySlice<UInt8> { bytes[SetupHeader.start..<setupHeaderEnd] }
    /// The protected-mode kernel: everything after the real-mode setup code.
    public var kernel: ArraySlice<UInt8> { bytes[kernelOffset...] }
    /// The protected-mode kernel's size in bytes.
    public var kernelSize: Int { bytes.count - kernelOffset }
    /// The memory the kernel occupies from its load address: `init_size`, or the file's
    /// protected-mode part if a header understates it.
    public var memoryFootprint: UInt64 { max(UInt64(initSize), UInt64(kernelSize)) }

    /// Parses and validates a bzImage.
    /// - Throws: `.notBzImage` without "HdrS" or for a zImage, `.unsupportedProtocol` below 2.12,
    ///   `.not64BitCapable` without XLF_KERNEL_64, `.truncated` if the header or kernel is cut
    ///   short, `.invalidHeader` for an impossible alignment.
    public init(parsing bytes: [UInt8]) throws(LinuxBootError) {
        guard let magic = bytes.littleEndian(UInt32.self, at: SetupHeader.magic) else {
            throw .notBzImage("\(bytes.count) bytes is too short to hold a setup header")
        }
        guard magic == SetupHeader.magicValue else { throw .notBzImage("no \"HdrS\" magic at 0x202") }
        guard let version = bytes.littleEndian(UInt16.self, at: SetupHeader.version),
              let lengthByte = bytes.littleEndian(UInt8.self, at: SetupHeader.lengthByte)
        else { throw .truncated("setup header") }
        guard version >= SetupHeader.minimumVersion else { throw .unsupportedProtocol(version: version) }

        let headerEnd = 0x202 + Int(lengthByte)
        guard headerEnd >= SetupHeader.minimumEnd else {
            throw .invalidHeader("the header ends at 0x\(String(headerEnd, radix: 16)), before init_size")
        }
        guard headerEnd <= bytes.count else {
            throw .truncated("setup header ends at 0x\(String(headerEnd, radix: 16)) but the file has \(bytes.count) bytes")
        }
        // Every read below lies inside 0x1F1..<headerEnd, which is inside the file.
        let fields = HeaderFields(bytes)
        let xLoadFlags = XLoadFlags(rawValue: fields.read(UInt16.self, SetupHeader.xLoadFlags))
        guard xLoadFlags.contains(.kernel64) else { throw .not64BitCapable }
        let loadFlags = LoadFlags(rawValue: fields.read(UInt8.self, SetupHeader.loadFlags))
        guard loadFlags.contains(.loadedHigh) else {
            throw .notBzImage("LOADED_HIGH is clear: a zImage, which loads at 0x10000")
        }

        let rawSetupSectors = Int(fields.read(UInt8.self, SetupHeader.setupSectors))
        let setupSectors = rawSetupSectors == 0 ? 4 : rawSetupSectors
        let kernelOffset = (setupSectors + 1) * 512
        guard kernelOffset >= headerEnd else {
            throw .invalidHeader("\(setupSectors) setup sectors end before the setup header does")
        }
        guard kernelOffset < bytes.count else {
            throw .truncated("the protected-mode kernel should start at 0x\(String(kernelOffset, radix: 16)) "
                             + "but the file has \(bytes.count) bytes")
        }

        let isRelocatable = fields.read(UInt8.self, SetupHeader.relocatableKernel) != 0
        let kernelAlignment = fields.read(UInt32.self, SetupHeader.kernelAlignment)
        if isRelocatable {
            guard kernelAlignment >= 4096, kernelAlignment & (kernelAlignment - 1) == 0 else {
                throw .invalidHeader("kernel_alignment 0x\(String(kernelAlignment, radix: 16)) "
                                     + "is not a power of two ≥ 4 KiB")
            }
        }

        self.bytes = bytes
        self.setupSectors = setupSectors
        self.protocolVersion = version
        self.loadFlags = loadFlags
        self.xLoadFlags = xLoadFlags
        self.kernelAlignment = kernelAlignment
        self.isRelocatable = isRelocatable
        self.preferredAddress = fields.read(UInt64.self, SetupHeader.preferredAddress)
        self.initSize = fields.read(UInt32.self, SetupHeader.initSize)
        self.commandLineSize = fields.read(UInt32.self, SetupHeader.commandLineSize)
        self.initrdAddressMax = fields.read(UInt32.self, SetupHeader.initrdAddressMax)
        self.kernelOffset = kernelOffset
        self.setupHeaderEnd = headerEnd
    }
}

/// Reads fields the caller has already proven lie inside the header.
private struct HeaderFields {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func read<T: FixedWidthInteger>(_ type: T.Type, _ offset: Int) -> T {
        // The header bounds check in BzImage.init covers every offset passed here; 0 is unreachable.
        bytes.littleEndian(type, at: offset) ?? 0
    }
}
