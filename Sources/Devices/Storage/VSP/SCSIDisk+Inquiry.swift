import StorageProtocol

extension SCSIDisk {
    /// The VPD pages this unit implements, in the order SUPPORTED VPD PAGES lists them.
    public static let vitalProductDataPages: [UInt8] = [
        VitalProductDataPage.supportedPages, VitalProductDataPage.unitSerialNumber,
        VitalProductDataPage.deviceIdentification, VitalProductDataPage.blockLimits,
        VitalProductDataPage.blockDeviceCharacteristics, VitalProductDataPage.logicalBlockProvisioning,
    ]

    /// Standard INQUIRY data: a connected direct-access unit, SPC-3, command queueing.
    public var standardInquiry: StandardInquiryData {
        StandardInquiryData(
            version: Self.inquiryVersion, commandQueueing: true, vendor: Array(configuration.vendor.utf8),
            product: Array(configuration.product.utf8), revision: Array(configuration.revision.utf8))
    }

    /// INQUIRY: the standard data or a VPD page, cut to the allocation length; the length
    /// fields still describe the whole data (Linux reads 4 bytes first, `scsi_vpd_inquiry`).
    mutating func inquiry(_ cdb: InquiryCDB) -> SCSIOutcome {
        let data: [UInt8]
        if cdb.vitalProductData {
            guard let page = vitalProductDataPage(cdb.pageCode) else {
                return .checkCondition(.illegalRequest(.invalidFieldInCDB, cdbByte: 2, bit: 7))
            }
            data = page.bytes
        } else {
            data = standardInquiry.bytes
        }
        return .dataIn(data.truncated(to: Int(cdb.allocationLength)))
    }

    /// The VPD page `code`, or `nil` if this unit does not implement it.
    public func vitalProductDataPage(_ code: UInt8) -> VitalProductDataPage? {
        let blockSize = configuration.blockSize
        let granularity = configuration.physicalBlockSize / blockSize
        switch code {
        case VitalProductDataPage.supportedPages:
            return .supported(Self.vitalProductDataPages)
        case VitalProductDataPage.unitSerialNumber:
            return .serialNumber(Array(configuration.serialNumber.utf8))
        case VitalProductDataPage.deviceIdentification:
            let vendorSpecific = StandardInquiryData.field(Array(configuration.product.utf8), width: 16)
                + Array(configuration.serialNumber.utf8)
            return .t10Identification(vendor: Array(configuration.vendor.utf8), vendorSpecific: vendorSpecific)
        case VitalProductDataPage.blockLimits:
            let discard = configuration.discardSupported
            return BlockLimitsPage(
                optimalTransferLengthGranularity: UInt16(truncatingIfNeeded: granularity),
                maximumTransferLength: maximumTransferBytes / blockSize,
                maximumUnmapLBACount: discard ? Self.maximumUnmapBlocks : 0,
                maximumUnmapBlockDescriptorCount: discard ? Self.maximumUnmapDescriptors : 0,
                optimalUnmapGranularity: discard ? granularity : 0,
                unmapGranularityAlignment: discard ? 0 : nil
            ).page()
        case VitalProductDataPage.blockDeviceCharacteristics:
            return BlockDeviceCharacteristicsPage(
                mediumRotationRate: configuration.nonRotational ? BlockDeviceCharacteristicsPage.nonRotating : 0
            ).page()
        case VitalProductDataPage.logicalBlockProvisioning:
            let discard = configuration.discardSupported
            return LogicalBlockProvisioningPage(
                unmapSupported: discard, unmappedReadsZero: discard, provisioningType: discard ? 2 : 0
            ).page()
        default:
            return nil
        }
    }
}
