import HyperV

/// The code the root writes into the guest page named by the HYPERCALL MSR.
///
/// A VMCALL never reaches user space on a KVM without Hyper-V support, so the page traps with
/// port I/O instead (Docs/hyperv-interface.md §3.2):
///
///     00  F3 0F 1E FA            endbr64
///     04  48 81 F9 5D 00 01 00   cmp   rcx, 0x1005D        ; fast HvSignalEvent?
///     0B  75 07                  jne   slow
///     0D  89 D0                  mov   eax, edx            ; EAX = connection ID
///     0F  E7 E6                  out   0xE6, eax           ; ioeventfd DATAMATCH: no exit
///     11  31 D0                  xor   eax, edx            ; 0 = HV_STATUS_SUCCESS
///     13  C3                     ret
///     14  E6 E2            slow: out   0xE2, al            ; exits; the root sets RAX
///     16  C3                     ret
///
/// When a fast signal's connection has no ioeventfd, the OUT exits and the root answers with
/// RAX = status XOR connection ID, so the shared `xor` still yields the status. The rest of
/// the page is INT3.
public enum HvHypercallPage {
    public static func contents() -> [UInt8] {
        let signal = UInt8(PlatformPorts.signalEvent)
        let slow = UInt8(PlatformPorts.hypercall)
        let code: [UInt8] = [
            0xF3, 0x0F, 0x1E, 0xFA,
            0x48, 0x81, 0xF9, 0x5D, 0x00, 0x01, 0x00,
            0x75, 0x07,
            0x89, 0xD0,
            0xE7, signal,
            0x31, 0xD0,
            0xC3,
            0xE6, slow,
            0xC3,
        ]
        return code + [UInt8](repeating: 0xCC, count: SynIC.pageSize - code.count)
    }

    /// Offset of the fast-path OUT instruction.
    public static let signalOutOffset = 0x0F
    /// Offset of the slow-path OUT instruction.
    public static let hypercallOutOffset = 0x14
}
