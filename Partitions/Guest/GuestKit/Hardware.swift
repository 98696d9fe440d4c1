// The guest's view of its hardware: the assembly helpers in entry.S, callable from CPL3.

@_extern(c, "hv_hypercall") func _hypercall(_ control: UInt64, _ input: UInt64, _ output: UInt64) -> UInt64
@_extern(c, "hv_signal_event") func _signalEvent(_ connectionAndFlag: UInt64) -> UInt64
@_extern(c, "hv_end_of_message") func _endOfMessage()
@_extern(c, "hv_park") func _park()
@_extern(c, "hv_reference_time_msr") func _referenceTimeMSR() -> UInt64
@_extern(c, "hv_crash") func _crash()
@_extern(c, "hv_sleep") func _sleep(_ nanoseconds: UInt32)
@_extern(c, "hv_in_service_high") func _inServiceHigh() -> UInt32
@_extern(c, "port_out32") func _portOut32(_ port: UInt32, _ value: UInt32)
@_extern(c, "port_out8") func _portOut8(_ port: UInt32, _ value: UInt32)
@_extern(c, "port_in8") func _portIn8(_ port: UInt32) -> UInt32
@_extern(c, "port_in_words") func _portInWords(_ port: UInt32, _ buffer: UnsafeMutableRawPointer, _ words: Int)
@_extern(c, "port_out_words") func _portOutWords(_ port: UInt32, _ buffer: UnsafeRawPointer, _ words: Int)
@_extern(c, "port_in_dwords") func _portInDoublewords(_ port: UInt32, _ buffer: UnsafeMutableRawPointer, _ count: Int)
@_extern(c, "port_out_dwords") func _portOutDoublewords(_ port: UInt32, _ buffer: UnsafeRawPointer, _ count: Int)
@_extern(c, "read_tsc") func _readTSC() -> UInt64
@_extern(c, "cpu_relax") func _cpuRelax()
@_extern(c, "guest_message_pages") func _messagePages() -> UInt64
@_extern(c, "guest_event_flag_pages") func _eventFlagPages() -> UInt64
@_extern(c, "guest_sint_interrupt_counts") func _sintInterruptCounts() -> UInt64
@_extern(c, "guest_vp_index_seen") func _vpIndexSeen() -> UInt64
@_extern(c, "guest_heap") func _heapStart() -> UInt64
@_extern(c, "guest_heap_end") func _heapEnd() -> UInt64
@_extern(c, "guest_reference_tsc_page") func _referenceTSCPage() -> UInt64

/// Processor instructions available at CPL3 (IOPL=3 permits port I/O).
public enum CPU {
    @inline(__always) public static func timestamp() -> UInt64 { _readTSC() }
    @inline(__always) public static func relax() { _cpuRelax() }
    @inline(__always) public static func out32(_ port: UInt16, _ value: UInt32) { _portOut32(UInt32(port), value) }
    @inline(__always) public static func out8(_ port: UInt16, _ value: UInt8) { _portOut8(UInt32(port), UInt32(value)) }
    @inline(__always) public static func in8(_ port: UInt16) -> UInt8 { UInt8(truncatingIfNeeded: _portIn8(UInt32(port))) }
    /// REP INSW: `words` 16-bit reads of `port` into memory at `buffer`.
    @inline(__always) public static func inWords(_ port: UInt16, into buffer: UnsafeMutableRawPointer, words: Int) {
        _portInWords(UInt32(port), buffer, words)
    }
    /// REP INSL: `count` 32-bit reads of `port` into memory at `buffer`.
    @inline(__always) public static func inDoublewords(_ port: UInt16, into buffer: UnsafeMutableRawPointer, count: Int) {
        _portInDoublewords(UInt32(port), buffer, count)
    }
    /// REP OUTSL: `count` 32-bit writes to `port` from memory at `buffer`.
    @inline(__always) public static func outDoublewords(_ port: UInt16, from buffer: UnsafeRawPointer, count: Int) {
        _portOutDoublewords(UInt32(port), buffer, count)
    }
    /// REP OUTSW: `words` 16-bit writes to `port` from memory at `buffer`.
    @inline(__always) public static func outWords(_ port: UInt16, from buffer: UnsafeRawPointer, words: Int) {
        _portOutWords(UInt32(port), buffer, words)
    }

    /// Halts until about `nanoseconds` have passed or an interrupt arrives, whichever is first.
    /// One sleep lasts at most about 4.3 s: the x2APIC timer's count is 32 bits of nanoseconds.
    public static func sleep(nanoseconds: UInt64) { _sleep(UInt32(min(max(nanoseconds, 1000), UInt64(UInt32.max)))) }

    /// The local APIC's in-service bits for vectors 0xE0-0xFF, where every vector this guest
    /// uses lies: 0 whenever CPL3 runs, unless an interrupt went without its EOI.
    public static func inServiceHigh() -> UInt32 { _inServiceHigh() }

    /// Parks this processor for good (it only services interrupts from then on).
    public static func park() -> Never {
        while true { _park() }
    }

    /// Triple-faults the partition on purpose.
    public static func crash() -> Never {
        _crash()
        while true { _park() }
    }
}

/// A raw pointer into the guest's own identity-mapped memory.
@inline(__always)
public func physical(_ address: UInt64) -> UnsafeMutableRawPointer {
    UnsafeMutableRawPointer(bitPattern: UInt(address))!
}
