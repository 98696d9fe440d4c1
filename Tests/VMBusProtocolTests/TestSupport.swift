import VMBusProtocol

/// A ring of `dataSize` bytes whose read and write indices both start at `start`.
func makeRing(dataSize: Int, start: Int = 0) -> FlatRingMemory {
    let memory = FlatRingMemory(dataSize: dataSize)
    memory.control[RingControlWord.writeIndex.rawValue] = UInt32(start)
    memory.control[RingControlWord.readIndex.rawValue] = UInt32(start)
    return memory
}
