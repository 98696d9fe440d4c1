// The guest's view of its hardware: the assembly helpers in entry.S, callable from CPL3.

@_extern(c, "hv_hypercall") func _hypercall(_ control: UInt64, _ input: UInt64, _ output: UInt64) -> UInt64
@_extern(c, "hv_signal_event") func _signalEvent(_ connectionAndFlag: UInt64) -> UInt64
@_extern(c, "hv_end_of_message") func _endOfMessage()
@_extern(c, "hv_park") func _park()
@_extern(c, "hv_reference_time_msr") func _referenceTimeMSR() -> UInt64
@_extern(c, "hv_crash") func _crash()
@_extern(c, "hv_sleep") func _sleep(_ nanoseconds: UInt64)
@_extern(c, "port_out32") func _portOut32(_ port: UInt32, _ value: UInt32)
@_extern(c, "port_out8") func _portOut8(_ port: UInt32, _ value: UInt32)
@_extern(c, "port_in8") func _portIn8(_ port: UInt32) -> UInt32
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

    /// Halts until about `nanoseconds` have passed or an interrupt arrives, whichever is first.
    public static func sleep(nanoseconds: UInt64) { _sleep(max(nanoseconds, 1000)) }

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
