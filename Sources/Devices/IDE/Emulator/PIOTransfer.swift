/// A command in its PIO data phase. Data moves one DRQ block at a time: a sector, or up to the
/// multiple setting for READ/WRITE MULTIPLE, or the 512 bytes of IDENTIFY DEVICE.
struct PIOTransfer {
    enum Direction: Equatable {
        /// PIO data-in: the host reads the data register.
        case toHost
        /// PIO data-out: the host writes the data register.
        case fromHost
    }

    /// How the command addressed the media, so an error reports its sector the same way.
    enum Addressing {
        case identify
        case lba28
        case lba48
        case chs(CHSGeometry)
    }

    let direction: Direction
    let addressing: Addressing
    /// Sectors per DRQ block.
    let sectorsPerBlock: Int
    /// The current DRQ block (whole sectors).
    var block: [UInt8]
    /// Bytes of `block` already moved.
    var position = 0
    /// The first sector of `block`.
    var blockLBA: UInt64
    /// Sectors of the command after `block`.
    var sectorsAfterBlock: Int
    /// The host took the whole block and the next one is still to be read from storage
    /// (`IDEChannel.loadsBlocksLater`): the device is busy, no data moves.
    var awaitsLoad = false

    var blockSectors: Int { block.count / ATASector.size }
    var isBlockDone: Bool { position == block.count }

    /// Moves to the next block of the command: `min(sectorsPerBlock, sectorsAfterBlock)`
    /// sectors right after the current one, zero-filled, nothing moved yet.
    mutating func advance() {
        blockLBA += UInt64(blockSectors)
        let sectors = min(sectorsPerBlock, sectorsAfterBlock)
        sectorsAfterBlock -= sectors
        let size = sectors * ATASector.size
        if block.count != size {
            block = [UInt8](repeating: 0, count: size)
        }
        position = 0
    }
}
