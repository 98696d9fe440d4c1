import StorageProtocol

extension SCSIDisk {
    /// READ and WRITE of any size (SBC-3 §5.7-5.11, §5.31-5.35).
    mutating func readWrite(_ cdb: ReadWriteCDB) -> SCSIOutcome {
        if isStopped { return .checkCondition(Self.notReady) }
        // No protection information: RDPROTECT/WRPROTECT must be zero.
        guard cdb.protect == 0 else { return .checkCondition(.illegalRequest(.invalidFieldInCDB, cdbByte: 1, bit: 7)) }
        let blockSize = UInt64(configuration.blockSize)
        guard UInt64(cdb.transferLength) * blockSize <= UInt64(maximumTransferBytes) else {
            let lengthByte = switch cdb.size {
            case 6: 4
            case 12: 6
            case 16: 10
            default: 7
            }
            return .checkCondition(.illegalRequest(.invalidFieldInCDB, cdbByte: lengthByte, bit: 7))
        }
        guard inRange(cdb.logicalBlockAddress, UInt64(cdb.transferLength)) else { return .checkCondition(Self.outOfRange) }
        if cdb.direction == .write, configuration.readOnly { return .checkCondition(Self.writeProtected) }
        guard cdb.transferLength > 0 else { return .good }
        let offset = cdb.logicalBlockAddress * blockSize
        let length = Int(UInt64(cdb.transferLength) * blockSize)
        switch cdb.direction {
        case .read:
            return .read(offset: offset, length: length, forceUnitAccess: cdb.forceUnitAccess)
        case .write:
            // Without a write cache every write must be durable when it completes.
            return .write(offset: offset, length: length,
                          forceUnitAccess: cdb.forceUnitAccess || !configuration.writeCacheEnabled)
        }
    }

    /// SYNCHRONIZE CACHE(10)/(16) (SBC-3 §5.22-5.23). The range is checked, then the whole
    /// image is synchronized: fdatasync has no narrower form that also covers metadata.
    mutating func synchronizeCache(_ cdb: SynchronizeCacheCDB) -> SCSIOutcome {
        if isStopped { return .checkCondition(Self.notReady) }
        let blocks = cdb.blockCount == 0 ? 0 : UInt64(cdb.blockCount)
        guard inRange(cdb.logicalBlockAddress, blocks) else { return .checkCondition(Self.outOfRange) }
        return configuration.readOnly ? .good : .flush
    }

    /// UNMAP (SBC-3 §5.28): checks the CDB, then asks for the parameter list.
    mutating func unmap(_ cdb: UnmapCDB) -> SCSIOutcome {
        guard configuration.discardSupported else {
            return .checkCondition(.illegalRequest(.invalidCommandOperationCode))
        }
        if isStopped { return .checkCondition(Self.notReady) }
        guard !cdb.anchor else { return .checkCondition(.illegalRequest(.invalidFieldInCDB, cdbByte: 1, bit: 0)) }
        if configuration.readOnly { return .checkCondition(Self.writeProtected) }
        switch cdb.parameterListLength {
        case 0: return .good
        case 1..<UInt16(UnmapParameterList.headerSize):
            return .checkCondition(.illegalRequest(.parameterListLengthError, cdbByte: 7, bit: 7))
        default: return .needsParameterList(length: Int(cdb.parameterListLength))
        }
    }

    /// The second half of UNMAP: validates the transferred parameter list (descriptor count,
    /// ranges, total blocks) and yields the byte ranges to deallocate.
    public mutating func unmap(parameterList bytes: [UInt8]) -> SCSIOutcome {
        let list: UnmapParameterList
        do {
            list = try UnmapParameterList(parsing: bytes)
        } catch {
            return .checkCondition(.illegalRequest(.parameterListLengthError, cdbByte: 7, bit: 7))
        }
        guard list.descriptors.count <= Int(Self.maximumUnmapDescriptors) else {
            return .checkCondition(.invalidParameter(byte: 2, bit: 7))
        }
        let blockSize = UInt64(configuration.blockSize)
        var ranges: [ByteRange] = []
        var total: UInt64 = 0
        for (index, descriptor) in list.descriptors.enumerated() {
            let descriptorOffset = UnmapParameterList.headerSize + index * UnmapParameterList.descriptorSize
            guard inRange(descriptor.logicalBlockAddress, UInt64(descriptor.blockCount)) else {
                var sense = Self.outOfRange
                sense.fieldPointer = FieldPointer(inCDB: false, byte: UInt16(truncatingIfNeeded: descriptorOffset), bit: 7)
                return .checkCondition(sense)
            }
            total += UInt64(descriptor.blockCount)
            guard total <= UInt64(Self.maximumUnmapBlocks) else {
                return .checkCondition(.invalidParameter(byte: descriptorOffset + 8, bit: 7))
            }
            guard descriptor.blockCount > 0 else { continue }
            ranges.append(ByteRange(offset: descriptor.logicalBlockAddress * blockSize,
                                    length: UInt64(descriptor.blockCount) * blockSize))
        }
        return ranges.isEmpty ? .good : .unmap(ranges)
    }

    /// Whether `count` blocks from `lba` lie within the capacity (no overflow).
    func inRange(_ lba: UInt64, _ count: UInt64) -> Bool {
        let (end, overflow) = lba.addingReportingOverflow(count)
        return !overflow && end <= blockCount
    }
}
