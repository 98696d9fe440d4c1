import CLinux

/// The process's own heap.
public enum ProcessMemory {
    /// Gives the pages of freed heap memory back to the kernel (malloc_trim(3)), in every malloc
    /// arena. A long-lived service calls it after letting go of a large set of objects (a
    /// partition), so its resident memory returns to what it was rather than staying at its peak.
    public static func returnFreePages() {
        _ = clinux_malloc_trim()
    }
}
