/// Where a legacy ISA IDE channel sits: its ports and IRQ (drivers/ata/pata_legacy.c lists
/// 0x1F0/IRQ 14 and 0x170/IRQ 15 first; the control block is at base + 0x206).
public enum IDEChannelLocation: Sendable, Equatable {
    case primary
    case secondary

    /// The command block's first port (the data register).
    public var commandBlockBase: UInt16 {
        switch self {
        case .primary: 0x1F0
        case .secondary: 0x170
        }
    }

    /// The eight command block ports.
    public var commandBlockPorts: Range<UInt16> { commandBlockBase..<(commandBlockBase + 8) }

    /// The control block port: Device Control (write), Alternate Status (read).
    public var controlPort: UInt16 { commandBlockBase + ATARegister.controlBlockOffset }

    /// The ISA IRQ, edge-triggered.
    public var isaIRQ: Int {
        switch self {
        case .primary: 14
        case .secondary: 15
        }
    }
}
