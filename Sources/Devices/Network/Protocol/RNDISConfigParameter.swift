import HyperV

/// The information buffer of SET OID_GEN_RNDIS_CONFIG_PARAMETER (`struct
/// rndis_config_parameter_info`, Linux `hyperv_net.h`): name_offset @0, name_length @4, type @8
/// (0 integer, 2 string), value_offset @12, value_length @16, offsets from the buffer start;
/// name and string value are UTF-16LE. Linux sends "NetworkAddress" with twelve hex digits
/// (`rndis_filter_set_device_mac`): name at 20 (28 bytes), value at 48 (24 bytes).
public struct RNDISConfigParameter: Hashable, Sendable {
    public static let headerSize = 20
    /// `RNDIS_CONFIG_PARAM_TYPE_INTEGER`.
    public static let typeInteger: UInt32 = 0
    /// `RNDIS_CONFIG_PARAM_TYPE_STRING`.
    public static let typeString: UInt32 = 2
    /// The parameter Linux uses to change the MAC address.
    public static let networkAddressName: [UInt16] = "NetworkAddress".utf8.map { UInt16($0) }
    /// Longest name or value accepted, in bytes.
    public static let maximumFieldSize = 512

    /// The name as UTF-16 code units.
    public var name: [UInt16]
    public var type: UInt32
    /// The raw value bytes (UTF-16LE for strings).
    public var value: [UInt8]

    public init(name: [UInt16], type: UInt32, value: [UInt8]) {
        self.name = name
        self.type = type
        self.value = value
    }

    /// "NetworkAddress" = `address` as Linux encodes it.
    public static func networkAddress(_ address: MACAddress) -> RNDISConfigParameter {
        var value: [UInt8] = []
        for digit in address.hexDigits { value.appendLittleEndian(UInt16(digit)) }
        return RNDISConfigParameter(name: networkAddressName, type: typeString, value: value)
    }

    public init(parsing bytes: [UInt8]) throws(NetworkProtocolError) {
        guard let nameOffset = bytes.littleEndian(UInt32.self, at: 0), let nameLength = bytes.littleEndian(UInt32.self, at: 4),
            let type = bytes.littleEndian(UInt32.self, at: 8), let valueOffset = bytes.littleEndian(UInt32.self, at: 12),
            let valueLength = bytes.littleEndian(UInt32.self, at: 16)
        else { throw .truncated(needed: RNDISConfigParameter.headerSize, available: bytes.count) }
        guard nameLength % 2 == 0, Int(nameLength) <= RNDISConfigParameter.maximumFieldSize,
            UInt64(nameOffset) + UInt64(nameLength) <= UInt64(bytes.count)
        else { throw .badLayout("config parameter name") }
        guard Int(valueLength) <= RNDISConfigParameter.maximumFieldSize,
            UInt64(valueOffset) + UInt64(valueLength) <= UInt64(bytes.count)
        else { throw .badLayout("config parameter value") }
        var name: [UInt16] = []
        for index in 0..<(Int(nameLength) / 2) {
            name.append(bytes.littleEndian(UInt16.self, at: Int(nameOffset) + index * 2) ?? 0)
        }
        self.init(name: name, type: type, value: Array(bytes[Int(valueOffset)..<(Int(valueOffset) + Int(valueLength))]))
    }

    /// The value as a MAC address, if this is a string of twelve hex digits.
    public var macAddress: MACAddress? {
        guard type == RNDISConfigParameter.typeString, value.count == 24 else { return nil }
        var digits: [UInt8] = []
        for index in 0..<12 {
            guard let unit = value.littleEndian(UInt16.self, at: index * 2), unit < 0x80 else { return nil }
            digits.append(UInt8(unit))
        }
        return MACAddress(hexDigits: digits)
    }

    /// The encoded buffer: header, name, value.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = .zeros(RNDISConfigParameter.headerSize)
        let nameBytes = name.count * 2
        bytes.storeLittleEndian(UInt32(RNDISConfigParameter.headerSize), at: 0)
        bytes.storeLittleEndian(UInt32(truncatingIfNeeded: nameBytes), at: 4)
        bytes.storeLittleEndian(type, at: 8)
        bytes.storeLittleEndian(UInt32(truncatingIfNeeded: RNDISConfigParameter.headerSize + nameBytes), at: 12)
        bytes.storeLittleEndian(UInt32(truncatingIfNeeded: value.count), at: 16)
        for unit in name { bytes.appendLittleEndian(unit) }
        bytes += value
        return bytes
    }
}
