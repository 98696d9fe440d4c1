import HyperV

/// The boot-information page the root wrote (`GuestBootInfo`).
public struct BootInfo {
    public var processorCount: Int
    public var memorySize: UInt64
    public var tscFrequencyHz: UInt64
    public var freeMemoryStart: UInt64
    public var name: String
    public var arguments: [(key: String, value: String)]

    public init?(address: UInt64) {
        let page = physical(address)
        guard page.load(fromByteOffset: GuestBootInfo.magicOffset, as: UInt32.self) == GuestBootInfo.magic else {
            return nil
        }
        processorCount = Int(page.load(fromByteOffset: GuestBootInfo.processorCountOffset, as: UInt32.self))
        memorySize = page.load(fromByteOffset: GuestBootInfo.memorySizeOffset, as: UInt64.self)
        tscFrequencyHz = page.load(fromByteOffset: GuestBootInfo.tscFrequencyOffset, as: UInt64.self)
        freeMemoryStart = page.load(fromByteOffset: GuestBootInfo.freeMemoryStartOffset, as: UInt64.self)
        name = BootInfo.string(page, lengthAt: GuestBootInfo.nameLengthOffset, textAt: GuestBootInfo.nameOffset,
                               limit: GuestBootInfo.maximumNameLength)
        let text = BootInfo.string(page, lengthAt: GuestBootInfo.argumentsLengthOffset,
                                   textAt: GuestBootInfo.argumentsOffset, limit: GuestBootInfo.maximumArgumentsLength)
        arguments = []
        for word in text.split(separator: " ") {
            let parts = word.split(separator: "=", maxSplits: 1)
            arguments.append((String(parts[0]), parts.count > 1 ? String(parts[1]) : ""))
        }
    }

    private static func string(_ page: UnsafeMutableRawPointer, lengthAt: Int, textAt: Int, limit: Int) -> String {
        let length = min(Int(page.load(fromByteOffset: lengthAt, as: UInt32.self)), limit)
        var bytes: [UInt8] = []
        for index in 0..<length { bytes.append(page.load(fromByteOffset: textAt + index, as: UInt8.self)) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The value of argument `key`, if given.
    public func argument(_ key: String) -> String? {
        for (name, value) in arguments where name == key { return value }
        return nil
    }

    /// An integer argument, or `fallback`.
    public func integer(_ key: String, default fallback: Int) -> Int {
        guard let text = argument(key) else { return fallback }
        var value = 0
        for byte in text.utf8 {
            guard byte >= 0x30 && byte <= 0x39 else { return fallback }
            value = value * 10 + Int(byte - 0x30)
        }
        return value
    }
}
