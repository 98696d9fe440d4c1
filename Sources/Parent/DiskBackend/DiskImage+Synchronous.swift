import CDiskIO
import Glibc
import LinuxSupport
import SystemPackage

/// Synchronous access for devices that answer within a register access (the emulated IDE
/// channel): whole transfers with pread/pwrite on the calling thread, the same durability rules
/// as `DiskQueue` (a data sync failure is latched), and O_DIRECT through an aligned bounce
/// buffer when the range is aligned as the file system requires.
extension DiskImage {
    /// Fills `buffer` from the image at `offset` (within the image).
    public func read(at offset: UInt64, into buffer: inout [UInt8]) throws(SystemError) {
        try checkRange(offset, buffer.count)
        let count = buffer.count
        if let direct, isAligned(offset, count) {
            try withAlignedBuffer(count) { (aligned) throws(SystemError) in
                try transfer(direct.rawValue, aligned, count, offset, write: false)
                buffer.withUnsafeMutableBytes { destination in
                    // SAFETY: both buffers hold `count` bytes.
                    destination.baseAddress!.copyMemory(from: aligned, byteCount: count)
                }
            }
            return
        }
        let failure = buffer.withUnsafeMutableBytes { raw -> SystemError? in
            guard let base = raw.baseAddress else { return nil }
            do throws(SystemError) {
                try transfer(buffered.rawValue, base, count, offset, write: false)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    /// Writes `bytes` to the image at `offset`; with `dataSync` they are durable (and everything
    /// written before them) when this returns.
    public func write(at offset: UInt64, from bytes: [UInt8], dataSync: Bool = false) throws(SystemError) {
        guard !isReadOnly else { throw SystemError("write to read-only image \(path)", errno: .badFileDescriptor) }
        try checkRange(offset, bytes.count)
        let count = bytes.count
        if let direct, isAligned(offset, count) {
            try withAlignedBuffer(count) { (aligned) throws(SystemError) in
                bytes.withUnsafeBytes { source in
                    // SAFETY: both buffers hold `count` bytes.
                    aligned.copyMemory(from: source.baseAddress!, byteCount: count)
                }
                try transfer(direct.rawValue, aligned, count, offset, write: true)
            }
        } else {
            var copy = bytes
            let failure = copy.withUnsafeMutableBytes { raw -> SystemError? in
                guard let base = raw.baseAddress else { return nil }
                do throws(SystemError) {
                    try transfer(buffered.rawValue, base, count, offset, write: true)
                    return nil
                } catch {
                    return error
                }
            }
            if let failure { throw failure }
        }
        if dataSync { try self.dataSync() }
    }

    /// fdatasync: every write completed before the call is durable when it returns. A failure is
    /// latched: every later data sync of the image fails as well (Docs/storage.md, "Durability").
    public func dataSync() throws(SystemError) {
        if let latched = latchedFailure {
            throw SystemError("flush \(path) after a failed data sync", errno: latched)
        }
        guard !isReadOnly else { return }
        let ticket = syncs.begin()
        do {
            _ = try retryingOnInterrupt("fdatasync \(path)") { fdatasync(buffered.rawValue) }
        } catch {
            _ = syncFailure.compareExchange(expected: 0, desired: error.errno.rawValue, ordering: .acquiringAndReleasing)
            syncs.end(ticket)
            throw error
        }
        syncs.end(ticket)
        // As a queue's flush: proven once the syncs that overlapped it have ended (`SyncLedger`).
        let barrier = syncs.barrier
        let deadline = MonotonicClock.nanoseconds() &+ Self.settleTimeoutNanoseconds
        while !syncs.isSettled(through: barrier, orSignal: nil) {
            guard MonotonicClock.nanoseconds() < deadline else {
                throw SystemError("flush \(path): the data syncs of its other channels did not end", errno: .timedOut)
            }
            usleep(200)
        }
        if let latched = latchedFailure {
            throw SystemError("flush \(path) after a failed data sync", errno: latched)
        }
    }

    /// How long a synchronous flush waits for the syncs that overlapped it.
    static let settleTimeoutNanoseconds: UInt64 = 60_000_000_000

    private var latchedFailure: Errno? {
        let raw = syncFailure.load(ordering: .acquiring)
        return raw == 0 ? nil : Errno(rawValue: raw)
    }

    private func checkRange(_ offset: UInt64, _ count: Int) throws(SystemError) {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
        guard count >= 0, !overflow, end <= size else {
            throw SystemError("\(count) bytes at \(offset) are outside the \(size)-byte image \(path)", errno: .invalidArgument)
        }
    }

    private func isAligned(_ offset: UInt64, _ count: Int) -> Bool {
        offset % UInt64(directAlignment) == 0 && count % directAlignment == 0 && count > 0
    }

    private func withAlignedBuffer(_ count: Int, _ body: (UnsafeMutableRawPointer) throws(SystemError) -> Void)
        throws(SystemError)
    {
        // SAFETY: a fresh allocation of `count` bytes, used only within `body` and freed after it.
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: max(directAlignment, 4096))
        defer { buffer.deallocate() }
        try body(buffer)
    }

    /// Moves `count` bytes between `base` and the file, carrying on after short transfers.
    private func transfer(_ descriptor: Int32, _ base: UnsafeMutableRawPointer, _ count: Int, _ offset: UInt64, write: Bool)
        throws(SystemError)
    {
        var done = 0
        let what = write ? "write" : "read"
        while done < count {
            // SAFETY: `base` holds `count` bytes (the caller's buffer), and `done < count`.
            let result = try retryingOnInterrupt("\(what) \(count) bytes at \(offset) of \(path)") {
                write ? pwrite(descriptor, base + done, count - done, off_t(offset) + off_t(done))
                    : pread(descriptor, base + done, count - done, off_t(offset) + off_t(done))
            }
            guard result > 0 else {
                // End of file before the image's end: the file shrank underneath.
                throw SystemError("\(what) \(count) bytes at \(offset) of \(path): end of file", errno: .ioError)
            }
            done += result
        }
    }
}
