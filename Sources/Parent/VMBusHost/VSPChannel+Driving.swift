extension VSPChannel {
    /// Writes the packets queued behind a full ring while they fit, as the channel's worker does
    /// on every pass: for drivers that serve a session without a worker (the fuzzers' harness).
    /// - Returns: whether any was written.
    public func writeQueuedPackets() throws(VSPError) -> Bool {
        try flushBacklog()
    }
}
