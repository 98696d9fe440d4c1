import StorageProtocol

extension SCSIDisk {
    /// MODE SENSE(6)/(10): the caching page (the only page, so also all pages, 0x3F) behind a
    /// header with WP for a read-only disk and DPOFUA, and a block descriptor unless DBD.
    mutating func modeSense(_ cdb: ModeSenseCDB) -> SCSIOutcome {
        if cdb.pageControl == .saved {
            return .checkCondition(.illegalRequest(.savingParametersNotSupported, cdbByte: 2, bit: 7))
        }
        switch cdb.pageCode {
        case CachingModePage.pageCode, ModeSenseCDB.allPages:
            // Subpage 0, or 0xFF (all subpages); this device has no sub-pages.
            guard cdb.subpageCode == 0 || cdb.subpageCode == 0xFF else {
                return .checkCondition(.illegalRequest(.invalidFieldInCDB, cdbByte: 3, bit: 7))
            }
        default:
            return .checkCondition(.illegalRequest(.invalidFieldInCDB, cdbByte: 2, bit: 5))
        }
        let caching: [UInt8]
        if cdb.pageControl == .changeable {
            // MODE SELECT is not implemented: no bit is changeable.
            caching = [CachingModePage.pageCode, UInt8(CachingModePage.size - 2)] + [UInt8](repeating: 0, count: CachingModePage.size - 2)
        } else {
            caching = CachingModePage(writeCacheEnabled: configuration.writeCacheEnabled,
                                      readCacheDisabled: !configuration.readCacheEnabled).bytes
        }
        var deviceSpecific: DeviceSpecificParameter = .dpoAndFUASupported
        if configuration.readOnly { deviceSpecific.insert(.writeProtected) }
        var descriptors: [UInt8] = []
        let longLBA = cdb.isTenByte && cdb.longLBAAccepted
        if !cdb.disableBlockDescriptors {
            descriptors = longLBA
                ? ModeParameterData.longBlockDescriptor(blockCount: blockCount, blockLength: configuration.blockSize)
                : ModeParameterData.shortBlockDescriptor(blockCount: blockCount, blockLength: configuration.blockSize)
        }
        let data = ModeParameterData(isTenByte: cdb.isTenByte, deviceSpecific: deviceSpecific, blockDescriptors: descriptors,
                                     longLBA: longLBA && !descriptors.isEmpty, pages: caching)
        return .dataIn(data.bytes.truncated(to: Int(cdb.allocationLength)))
    }
}
