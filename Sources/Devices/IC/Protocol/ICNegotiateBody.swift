import HyperV

/// The NEGOTIATE body (`icmsg_negotiate`; Docs/hyperv-interface.md §10.3): u16 icframe_vercnt @0,
/// u16 icmsg_vercnt @2, u32 reserved @4, then the framework versions followed by the message
/// versions, 4 bytes each, from @8.
public struct ICNegotiateBody: Hashable, Sendable {
    /// Offset of the first version.
    public static let versionsOffset = 8
    /// icmsgsize of a guest response: counts, reserved and two versions.
    public static let responseMessageSize: UInt16 = 0x10

    /// Framework versions (offered by the host, or the one chosen by the guest).
    public var frameworkVersions: [ICVersion]
    /// Message versions (offered by the host, or the one chosen by the guest).
    public var messageVersions: [ICVersion]

    /// Creates a body.
    public init(frameworkVersions: [ICVersion], messageVersions: [ICVersion]) {
        self.frameworkVersions = frameworkVersions
        self.messageVersions = messageVersions
    }

    /// Parses a NEGOTIATE body; trailing bytes after the versions are ignored.
    /// - Throws: `ICError.truncated` if the counts name more versions than the body holds.
    public init(parsing body: [UInt8]) throws(ICError) {
        guard let frameworkCount = body.littleEndian(UInt16.self, at: 0),
            let messageCount = body.littleEndian(UInt16.self, at: 2),
            body.count >= ICNegotiateBody.versionsOffset
        else { throw .truncated(needed: ICNegotiateBody.versionsOffset, available: body.count) }
        let total = Int(frameworkCount) + Int(messageCount)
        let needed = ICNegotiateBody.versionsOffset + total * ICVersion.size
        guard body.count >= needed else { throw .truncated(needed: needed, available: body.count) }
        var versions: [ICVersion] = []
        versions.reserveCapacity(total)
        for index in 0..<total {
            guard let version = ICVersion(bytes: body, at: ICNegotiateBody.versionsOffset + index * ICVersion.size)
            else { throw .truncated(needed: needed, available: body.count) }
            versions.append(version)
        }
        frameworkVersions = Array(versions[0..<Int(frameworkCount)])
        messageVersions = Array(versions[Int(frameworkCount)...])
    }

    /// The serialized body.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(
            ICNegotiateBody.versionsOffset + (frameworkVersions.count + messageVersions.count) * ICVersion.size)
        bytes.storeLittleEndian(UInt16(truncatingIfNeeded: frameworkVersions.count), at: 0)
        bytes.storeLittleEndian(UInt16(truncatingIfNeeded: messageVersions.count), at: 2)
        var offset = ICNegotiateBody.versionsOffset
        for version in frameworkVersions + messageVersions {
            version.store(into: &bytes, at: offset)
            offset += ICVersion.size
        }
        return bytes
    }
}
