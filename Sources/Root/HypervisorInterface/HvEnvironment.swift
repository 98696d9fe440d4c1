import HyperV

/// What the Hyper-V emulation needs from the partition around it: interrupt injection, the
/// host clock, and observers for state other processes mirror.
///
/// Calls may arrive while a virtual processor's SynIC lock is held: implementations must not
/// call back into the `HvPartition`.
public protocol HvEnvironment: Sendable {
    /// The host time-stamp counter.
    func hostTimestampCounter() -> UInt64
    /// Processor `vp`'s own time-stamp counter, read on that processor's thread, or `nil` to
    /// derive it from the host TSC. The processor's TSC is what its reference TSC page is
    /// applied to, so TIME_REF_COUNT computed from it agrees with the page even when the host
    /// hypervisor moves the guest TSC's offset (a nested KVM does).
    func guestTimestampCounter(vp: UInt32) -> UInt64?
    /// SINT `sint` of processor `vp` was reprogrammed. `interruptsEnabled` is false while the
    /// SynIC is disabled or the SINT is masked or polled: nothing may be injected then.
    func sintChanged(vp: UInt32, sint: Int, vector: UInt8, interruptsEnabled: Bool)
    /// Injects SINT `sint`'s interrupt into processor `vp`.
    func raiseSINT(vp: UInt32, sint: Int)
    /// Processor `vp`'s SynIC pages changed (the parent partition writes event flags there).
    func synicPagesChanged(vp: UInt32, pages: SynICPages)
    /// The guest wrote CRASH_CTL with the notify bit: parameters P0-P4 and, with
    /// CRASH_NOTIFY_MSG, the crash message text.
    func guestCrashReported(parameters: [UInt64], message: String?)
}

/// The SynIC state other components mirror for one virtual processor.
public struct SynICPages: Hashable, Sendable {
    /// SCONTROL bit 0.
    public var enabled: Bool
    /// The message page, if enabled.
    public var messagePage: UInt64?
    /// The event-flags page, if enabled.
    public var eventFlagsPage: UInt64?

    public init(enabled: Bool, messagePage: UInt64?, eventFlagsPage: UInt64?) {
        self.enabled = enabled
        self.messagePage = messagePage
        self.eventFlagsPage = eventFlagsPage
    }
}
