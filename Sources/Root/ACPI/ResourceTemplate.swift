import HyperV

/// The byte list of an ASL `ResourceTemplate()`: descriptors followed by an end tag whose
/// checksum byte makes the whole list sum to 0 (ACPI 6.4 §6.4.2.9 "End Tag").
public enum ResourceTemplate {
    /// `descriptors` followed by the end tag.
    public static func encode(_ descriptors: [ResourceDescriptor]) -> [UInt8] {
        var bytes = descriptors.flatMap(\.encoded)
        bytes.append(ResourceDescriptor.endTag)
        bytes.append(TableHeader.checksum(of: bytes[...]))
        return bytes
    }

    /// The descriptors before the end tag.
    /// - Throws: `AMLDecodeError` when a descriptor runs past the buffer or there is no end tag.
    public static func decode(_ bytes: [UInt8]) throws(AMLDecodeError) -> [ResourceDescriptor] {
        var descriptors: [ResourceDescriptor] = []
        var offset = 0
        while offset < bytes.count {
            let tag = bytes[offset]
            let headerSize: Int
            let bodySize: Int
            if tag & 0x80 == 0 {
                headerSize = 1
                bodySize = Int(tag & 0x07)
            } else {
                guard let length = bytes.littleEndian(UInt16.self, at: offset + 1) else {
                    throw AMLDecodeError(offset: offset, reason: "large resource descriptor header is truncated")
                }
                headerSize = 3
                bodySize = Int(length)
            }
            let end = offset + headerSize + bodySize
            guard end <= bytes.count else {
                throw AMLDecodeError(offset: offset,
                                     reason: "resource descriptor 0x\(String(tag, radix: 16)) runs past the buffer")
            }
            let whole = Array(bytes[offset..<end])
            if tag == ResourceDescriptor.endTag {
                guard end == bytes.count else {
                    throw AMLDecodeError(offset: end, reason: "bytes follow the end tag")
                }
                return descriptors
            }
            descriptors.append(descriptor(whole))
            offset = end
        }
        throw AMLDecodeError(offset: offset, reason: "resource template has no end tag")
    }

    /// Interprets one complete descriptor whose length is already checked.
    private static func descriptor(_ bytes: [UInt8]) -> ResourceDescriptor {
        switch bytes[0] {
        case ResourceDescriptor.ioTag:
            guard let minimum = bytes.littleEndian(UInt16.self, at: 2),
                  let maximum = bytes.littleEndian(UInt16.self, at: 4) else { return .other(bytes) }
            return .io(.init(decodes16Bits: bytes[1] & 1 != 0, minimum: minimum, maximum: maximum,
                             alignment: bytes[6], length: bytes[7]))
        case ResourceDescriptor.irqTag:
            guard let mask = bytes.littleEndian(UInt16.self, at: 1) else { return .other(bytes) }
            return .irq(mask: mask)
        case ResourceDescriptor.qwordAddressTag
        where bytes.count == 3 + ResourceDescriptor.qwordAddressLength && bytes[3] == 0:  // memory ranges only
            let fields = stride(from: 6, to: 46, by: 8).map { bytes.littleEndian(UInt64.self, at: $0) ?? 0 }
            return .qwordMemory(.init(isConsumer: bytes[4] & 1 != 0, isWritable: bytes[5] & 1 != 0,
                                      cacheability: (bytes[5] >> 1) & 0x3, granularity: fields[0],
                                      minimum: fields[1], maximum: fields[2], translation: fields[3],
                                      length: fields[4]))
        default:
            return .other(bytes)
        }
    }
}
