/// AML byte values this module encodes or decodes (ACPI 6.4 §20.2 "AML Grammar Definition").
public enum AMLOpcode {
    /// ZeroOp: the integer 0.
    public static let zero: UInt8 = 0x00
    /// OneOp: the integer 1.
    public static let one: UInt8 = 0x01
    /// OnesOp: all bits set.
    public static let ones: UInt8 = 0xFF
    /// NameOp NameString DataRefObject.
    public static let name: UInt8 = 0x08
    /// BytePrefix ByteData.
    public static let bytePrefix: UInt8 = 0x0A
    /// WordPrefix WordData.
    public static let wordPrefix: UInt8 = 0x0B
    /// DWordPrefix DWordData.
    public static let dwordPrefix: UInt8 = 0x0C
    /// StringPrefix AsciiCharList NullChar.
    public static let stringPrefix: UInt8 = 0x0D
    /// QWordPrefix QWordData.
    public static let qwordPrefix: UInt8 = 0x0E
    /// ScopeOp PkgLength NameString TermList.
    public static let scope: UInt8 = 0x10
    /// BufferOp PkgLength BufferSize ByteList.
    public static let buffer: UInt8 = 0x11
    /// PackageOp PkgLength NumElements PackageElementList.
    public static let package: UInt8 = 0x12
    /// MethodOp PkgLength NameString MethodFlags TermList.
    public static let method: UInt8 = 0x14
    /// ReturnOp ArgObject.
    public static let `return`: UInt8 = 0xA4
    /// ExtOpPrefix; `device` follows it.
    public static let extendedPrefix: UInt8 = 0x5B
    /// DeviceOp (after ExtOpPrefix) PkgLength NameString TermList.
    public static let device: UInt8 = 0x82

    /// `\`: the name that follows is absolute.
    public static let rootChar: UInt8 = 0x5C
    /// `^`: one scope up.
    public static let parentPrefix: UInt8 = 0x5E
    /// Two name segments follow.
    public static let dualNamePrefix: UInt8 = 0x2E
    /// A segment count byte and that many segments follow.
    public static let multiNamePrefix: UInt8 = 0x2F
    /// An empty name.
    public static let nullName: UInt8 = 0x00
}
