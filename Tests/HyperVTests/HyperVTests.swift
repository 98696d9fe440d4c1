import HyperV
import Testing

@Suite("TLFS definitions")
struct HyperVTests {
    @Test func sintRegistersDecodeTheirBits() {
        #expect(SINTRegister.reset.isMasked)
        let sint = SINTRegister(rawValue: 0xF3 | (1 << 17) | (1 << 18))
        #expect(sint.vector == 0xF3 && !sint.isMasked && sint.autoEOI && sint.isPolling)
        #expect(SINTRegister(vector: 0xF3, masked: true).rawValue == 0x100F3)
    }

    @Test func syntheticMSRIndicesFollowTheTLFS() {
        #expect(SyntheticMSR.sint(2).rawValue == 0x4000_0092)
        #expect(SyntheticMSR(rawValue: 0x4000_009F).sintIndex == 15)
        #expect(SyntheticMSR(rawValue: 0x4000_00A0).sintIndex == nil)
        #expect(SyntheticMSR(rawValue: 0x4000_0104).crashParameterIndex == 4)
        #expect(SyntheticMSR.range.contains(SyntheticMSR.tscInvariantControl.rawValue))
    }

    @Test func hypercallControlSplitsItsFields() {
        let control = HypercallControl(rawValue: 0x0003_0002_0001_005D | (3 << 17))
        #expect(control.code == .signalEvent && control.isFast)
        #expect(control.variableHeaderSize == 3 && control.repCount == 2 && control.repStart == 3)
        #expect(HypercallControl(rawValue: 1 << 31).reservedBits != 0)
        #expect(HypercallControl(code: .postMessage).rawValue == 0x5C)
    }

    @Test func overlayRegistersSplitEnableAndPage() {
        let register = OverlayPageRegister(rawValue: 0x12345_001)
        #expect(register.isEnabled && register.pageNumber == 0x12345 && register.pageAddress == 0x1234_5000)
        #expect(OverlayPageRegister(enabled: false, pageNumber: 7).rawValue == 0x7000)
    }

    @Test func referenceTSCScaleConvertsTicksTo100ns() {
        let scale = ReferenceTSCPage.scale(tscFrequencyHz: 2_000_000_000)
        let oneSecond = ReferenceTSCPage.referenceTime(tsc: 2_000_000_000, scale: scale, offset: 0)
        #expect(oneSecond >= 9_999_999 && oneSecond <= 10_000_000)
        #expect(ReferenceTSCPage.referenceTime(tsc: 0, scale: scale, offset: 5) == 5)
    }

    @Test func wireReadsAreTotal() {
        let bytes: [UInt8] = [1, 2, 3]
        #expect(bytes.littleEndian(UInt16.self, at: 1) == 0x0302)
        #expect(bytes.littleEndian(UInt32.self, at: 0) == nil)
        #expect(bytes.littleEndian(UInt8.self, at: -1) == nil)
        #expect(bytes.littleEndian(UInt8.self, at: 3) == nil)
        var out: [UInt8] = []
        out.appendLittleEndian(UInt16(0xBEEF))
        #expect(out == [0xEF, 0xBE])
    }

    /// The byte-at-a-time accessors every `WireBytes` has (a generic context sees only them).
    static func byteWise<Bytes: WireBytes, T: FixedWidthInteger>(_ bytes: Bytes, _: T.Type, at offset: Int) -> T? {
        bytes.littleEndian(T.self, at: offset)
    }

    static func byteWiseStore<Bytes: WireBytes, T: FixedWidthInteger>(_ bytes: inout Bytes, _ value: T, at offset: Int) {
        bytes.storeLittleEndian(value, at: offset)
    }

    @Test("Whole-field loads and stores of byte arrays and fixed buffers agree with the byte-at-a-time ones, and reads stay total")
    func wholeFieldAccessMatchesByteWise() {
        let array: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        var fixed = FixedBytes<8>(copying: array)
        for offset in Array(-1...9) + [Int.min, Int.max, Int.max - 1] {
            #expect(array.littleEndian(UInt16.self, at: offset) == Self.byteWise(array, UInt16.self, at: offset))
            #expect(array.littleEndian(UInt32.self, at: offset) == Self.byteWise(array, UInt32.self, at: offset))
            #expect(array.littleEndian(UInt64.self, at: offset) == Self.byteWise(array, UInt64.self, at: offset))
            #expect(array.littleEndian(Int16.self, at: offset) == Self.byteWise(array, Int16.self, at: offset))
            #expect(array.littleEndian(Int64.self, at: offset) == Self.byteWise(array, Int64.self, at: offset))
            #expect(fixed.littleEndian(UInt16.self, at: offset) == Self.byteWise(array, UInt16.self, at: offset))
            #expect(fixed.littleEndian(UInt32.self, at: offset) == Self.byteWise(array, UInt32.self, at: offset))
            #expect(fixed.littleEndian(UInt64.self, at: offset) == Self.byteWise(array, UInt64.self, at: offset))
            #expect(fixed.littleEndian(Int32.self, at: offset) == Self.byteWise(array, Int32.self, at: offset))
        }
        #expect(fixed.littleEndian(UInt64.self, at: 0) == 0x0807_0605_0403_0201)
        #expect(FixedBytes<8>(copying: [0xFF, 0xFF]).littleEndian(Int16.self, at: 0) == -1)
        #expect(FixedBytes<2>().littleEndian(UInt32.self, at: 0) == nil)
        #expect(FixedBytes<0>().littleEndian(UInt8.self, at: 0) == nil)
        #expect([UInt8]().littleEndian(UInt8.self, at: 0) == nil)
        fixed.storeLittleEndian(UInt32(0xDEAD_BEEF), at: 3)
        #expect(fixed.prefix(8) == [1, 2, 3, 0xEF, 0xBE, 0xAD, 0xDE, 8])
        var stored = array
        var storedByteWise = array
        stored.storeLittleEndian(UInt16(0xBEEF), at: 6)
        Self.byteWiseStore(&storedByteWise, UInt16(0xBEEF), at: 6)
        #expect(stored == storedByteWise && stored == [1, 2, 3, 4, 5, 6, 0xEF, 0xBE])
        // The array the copy shared its storage with is untouched.
        #expect(array == [1, 2, 3, 4, 5, 6, 7, 8])
    }

    @Test("A fixed buffer copies a range of another in and out, and leaves the rest as it was")
    func fixedBytesCopyRanges() {
        let source = FixedBytes<6>(copying: [10, 11, 12, 13, 14, 15])
        #expect(FixedBytes<3>(copying: source, from: 2).prefix(3) == [12, 13, 14])
        var target = FixedBytes<8>(copying: [1, 1, 1, 1, 1, 1, 1, 1])
        target.store(FixedBytes<3>(copying: source, from: 3), at: 5)
        #expect(target.prefix(8) == [1, 1, 1, 1, 1, 13, 14, 15])
    }

    @Test func slotAndFlagOffsetsFollowTheLayout() {
        #expect(SynIC.messageSlotOffset(sint: 2) == 512)
        #expect(SynIC.eventFlagsOffset(sint: 2) == 512)
        #expect(MessageSlot.payloadOffset == 16 && SynIC.maximumMessagePayload == 240)
        #expect(PostMessageInput.size == 256)
    }

    /// A REP INS reads the port once per element: every element is answered, not the first
    /// alone (the rest of KVM's data area would otherwise keep what an earlier exit left there).
    @Test func everyElementOfARepeatedPortReadIsAnswered() {
        #expect(PlatformPorts.read(port: PlatformPorts.nullExit, size: 1, count: 300) == [UInt8](repeating: 0, count: 300))
        #expect(PlatformPorts.read(port: PlatformPorts.pm1Control, size: 2, count: 3) == [1, 0, 1, 0, 1, 0])
        #expect(PlatformPorts.read(port: PlatformPorts.pm1Control, size: 4, count: 2) == [1, 0, 0, 0, 1, 0, 0, 0])
        #expect(PlatformPorts.read(port: PlatformPorts.pm1Control + 1, size: 1, count: 2) == [0, 0])
        #expect(PlatformPorts.read(port: PlatformPorts.pm1Event + 2, size: 2, count: 4) == [UInt8](repeating: 0, count: 8))
        #expect(PlatformPorts.read(port: PlatformPorts.power, size: 1, count: 1) == [0])
        #expect(PlatformPorts.read(port: 0x1234, size: 4, count: 2) == [UInt8](repeating: 0xFF, count: 8))
        #expect(PlatformPorts.read(port: PlatformPorts.hypercall, size: 1, count: 0) == [0xFF], "a count of 0 is one read")
    }
}
