/// Why an integration-component message was rejected (Docs/hyperv-interface.md §10).
///
/// Every parser in this module turns malformed or hostile input into one of these; none traps.
public enum ICError: Error, Hashable, Sendable {
    /// The bytes end before the structure does: `needed` bytes are required, `available` exist.
    case truncated(needed: Int, available: Int)
    /// The pipe header's flags are not PIPE_PACKET_TYPE_DATA (1).
    case invalidPipeHeader(flags: UInt32)
    /// The icmsgtype is `found`, not the `expected` type.
    case unexpectedMessageType(expected: ICMessageType, found: ICMessageType)
    /// A NEGOTIATE body's version counts are impossible here (for example a response that is
    /// neither 1/1 nor 0/0).
    case invalidVersionCounts(framework: UInt16, message: UInt16)
    /// A message that should be a response lacks the RESPONSE flag.
    case notAResponse(ICFlags)
    /// A replacement body of `size` bytes does not fit in the request's `capacity` bytes
    /// (responses are built in place and keep the request's length).
    case bodyTooLarge(size: Int, capacity: Int)
}
