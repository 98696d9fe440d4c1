/// The data register. Data moves as a byte stream of the current DRQ block, whole words at a
/// time; a run may span blocks (the next block is ready as soon as the previous one is
/// taken), except data-in blocks with `loadsBlocksLater`, where a run ends at the block's end.
/// Without a matching data phase, or with device 1 selected, reads return 0xFF bytes (a
/// floating bus) and writes are dropped.
extension IDEChannel {
    /// One 16-bit data register read.
    public mutating func readData16() -> UInt16 {
        defer { updateLine() }
        return readWord()
    }

    /// One 32-bit data register read: two words, the first in the low half.
    public mutating func readData32() -> UInt32 {
        defer { updateLine() }
        let low = readWord()
        return UInt32(low) | UInt32(readWord()) << 16
    }

    /// One 16-bit data register write.
    public mutating func writeData16(_ value: UInt16) {
        defer { updateLine() }
        guard !resetAsserted else { return }
        deviceControl &= ~ATADeviceControl.highOrderByte
        writeWord(value)
    }

    /// One 32-bit data register write: two words, the low half first.
    public mutating func writeData32(_ value: UInt32) {
        defer { updateLine() }
        guard !resetAsserted else { return }
        deviceControl &= ~ATADeviceControl.highOrderByte
        writeWord(UInt16(truncatingIfNeeded: value))
        writeWord(UInt16(truncatingIfNeeded: value >> 16))
    }

    /// Fills `buffer` from the data register, as a REP INSW/INSD of `buffer.count` bytes does
    /// (an odd count takes a whole last word). Interrupts for the blocks it crosses are raised
    /// as the blocks are reached; with `loadsBlocksLater` it crosses none, and bytes past the
    /// block's end read 0xFF.
    public mutating func readData(into buffer: inout [UInt8]) {
        defer { updateLine() }
        let moved = moveToHost(buffer.count, into: &buffer)
        if moved < buffer.count {
            buffer.replaceSubrange(moved..<buffer.count, with: repeatElement(0xFF, count: buffer.count - moved))
        }
        if buffer.count % 2 == 1, moved == buffer.count {
            var highByte: [UInt8] = [0]
            _ = moveToHost(1, into: &highByte)
        }
    }

    /// Writes `bytes` to the data register, as a REP OUTSW/OUTSD of `bytes.count` bytes does
    /// (an odd count is completed with a zero byte).
    public mutating func writeData(_ bytes: [UInt8]) {
        writeData(bytes[...])
    }

    /// Writes `bytes` to the data register (see `writeData(_: [UInt8])`).
    public mutating func writeData(_ bytes: ArraySlice<UInt8>) {
        defer { updateLine() }
        guard !resetAsserted else { return }
        deviceControl &= ~ATADeviceControl.highOrderByte
        moveFromHost(bytes)
        if bytes.count % 2 == 1 { moveFromHost([0][...]) }
    }

    /// Bytes the host still has to write before the current PIO data-out block is complete and
    /// goes to storage; `nil` without a data-out phase. A host that must not block on storage
    /// inside a register access runs the accesses that reach it elsewhere.
    public var dataOutBytesUntilBlockEnd: Int? {
        guard dataPhase(.fromHost), let transfer else { return nil }
        return transfer.block.count - transfer.position
    }

    // MARK: Internals

    /// Whether device 0 runs a data phase in `direction` that the host can reach now.
    private func dataPhase(_ direction: PIOTransfer.Direction) -> Bool {
        guard let transfer, !resetAsserted, !taskFile.selectsDevice1 else { return false }
        return transfer.direction == direction && !transfer.awaitsLoad
    }

    /// One word of a data-in block (single IN instructions: no buffers, one per exit).
    private mutating func readWord() -> UInt16 {
        guard dataPhase(.toHost), var read = transfer.take() else { return 0xFFFF }
        guard read.position + 2 <= read.block.count else {
            // Positions stay even (odd runs take a whole word), so this is unreachable.
            transfer = consume read
            return 0xFFFF
        }
        let word = UInt16(read.block[read.position]) | UInt16(read.block[read.position + 1]) << 8
        read.position += 2
        if read.isBlockDone {
            transfer = finishDataInBlock(consume read)
        } else {
            transfer = consume read
        }
        return word
    }

    /// One word into a data-out block (single OUT instructions, as KVM delivers REP OUTS:
    /// arch/x86/kvm/emulate.c: em_out passes one element per exit).
    private mutating func writeWord(_ word: UInt16) {
        guard dataPhase(.fromHost), var write = transfer.take() else { return }
        guard write.position + 2 <= write.block.count else {
            transfer = consume write
            return
        }
        write.block[write.position] = UInt8(truncatingIfNeeded: word)
        write.block[write.position + 1] = UInt8(truncatingIfNeeded: word >> 8)
        write.position += 2
        if write.isBlockDone {
            transfer = finishDataOutBlock(consume write)
        } else {
            transfer = consume write
        }
    }

    /// Moves up to `count` bytes of data-in blocks into `buffer` from its start; returns how
    /// many moved.
    private mutating func moveToHost(_ count: Int, into buffer: inout [UInt8]) -> Int {
        var moved = 0
        while moved < count, dataPhase(.toHost), var read = transfer.take() {
            let run = min(read.block.count - read.position, count - moved)
            buffer.replaceSubrange(moved..<(moved + run), with: read.block[read.position..<(read.position + run)])
            read.position += run
            moved += run
            if read.isBlockDone {
                transfer = finishDataInBlock(consume read)
            } else {
                transfer = consume read
            }
        }
        return moved
    }

    /// Moves `bytes` into data-out blocks, writing each block as it fills.
    private mutating func moveFromHost(_ bytes: ArraySlice<UInt8>) {
        var rest = bytes
        while !rest.isEmpty, dataPhase(.fromHost), var write = transfer.take() {
            let run = min(write.block.count - write.position, rest.count)
            write.block.replaceSubrange(write.position..<(write.position + run), with: rest.prefix(run))
            write.position += run
            rest = rest.dropFirst(run)
            if write.isBlockDone {
                transfer = finishDataOutBlock(consume write)
            } else {
                transfer = consume write
            }
        }
    }
}
