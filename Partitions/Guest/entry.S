// CPL0 entry of the Embedded Swift guest.
//
// The root enters every virtual processor here in 64-bit mode (its boot GDT, identity map of
// the low 4 GiB, interrupts off) with RDI = VP index and RSI = GPA of the boot-information
// page. In a few hundred emulated instructions this code installs the guest's own GDT, TSS,
// IDT and user-accessible page tables, enables the x2APIC, performs the Hyper-V MSR sequence
// in the order Linux uses (Docs/hyperv-interface.md §2.4: GUEST_OS_ID, HYPERCALL, VP_INDEX,
// VP_ASSIST_PAGE, SIMP, SIEFP, SINTx, SCONTROL), and drops to CPL3 with IOPL=3, where all
// Swift code runs. Interrupt handlers stay tiny: they count, EOI (or leave it to the sleep
// service whose `hlt` they end) and return.
//
// kvm_pvm facts this code is shaped by (verified on the development machine): `int n` from
// CPL3 raises #UD even through a DPL3 gate, and writing STAR, LSTAR or SFMASK breaks interrupt
// delivery, so neither software interrupts nor `syscall` can enter CPL0. CPL3 asks for CPL0
// services with a `ud2` in a stub, which the #UD handler recognises by its address, serves on
// the processor's kernel stack and returns past. IOPL reads as 0 at CPL3, so port access is granted
// by each TSS's I/O permission bitmap. A fault taken at CPL0 with no IDT ends in a KVM emulation
// error, so deliberate triple faults are raised from CPL3.

    .set MAX_VPS, 8
    .set KERNEL_STACK_SIZE, 0x4000
    .set USER_STACK_SIZE, 0x40000
    .set TSS_SIZE, 104
    // Each TSS carries a full I/O permission bitmap of zeros (every port allowed) plus the
    // terminating 0xFF byte. IOPL=3 alone is not enough: kvm_pvm reports IOPL 0 at CPL3 and
    // consults the bitmap, as hardware does when CPL > IOPL.
    .set IO_BITMAP_SIZE, 8192
    .set TSS_STRIDE, TSS_SIZE + IO_BITMAP_SIZE + 8
    .set TSS_LIMIT, TSS_SIZE + IO_BITMAP_SIZE

    .set SEL_KERNEL_CODE, 0x08
    .set SEL_KERNEL_DATA, 0x10
    .set SEL_USER_DATA, 0x1B
    .set SEL_USER_CODE, 0x23
    .set SEL_TSS0, 0x28

    // Synthetic MSRs.
    .set MSR_GUEST_OS_ID, 0x40000000
    .set MSR_HYPERCALL, 0x40000001
    .set MSR_VP_INDEX, 0x40000002
    .set MSR_TIME_REF_COUNT, 0x40000020
    .set MSR_REFERENCE_TSC, 0x40000021
    .set MSR_VP_ASSIST_PAGE, 0x40000073
    .set MSR_SCONTROL, 0x40000080
    .set MSR_SIEFP, 0x40000082
    .set MSR_SIMP, 0x40000083
    .set MSR_EOM, 0x40000084
    .set MSR_SINT0, 0x40000090

    // Guest OS ID: an open-source OS (bit 63), OS type 0x7F, version 1.
    .set GUEST_OS_ID_HIGH, 0x807F0000
    .set GUEST_OS_ID_LOW, 0x00010000

    // Interrupt vectors.
    .set VECTOR_SINT2, 0xF3      // VMBus
    .set VECTOR_SINT5, 0xF4      // diagnostics, interrupt-driven
    .set VECTOR_SINT6, 0xF5      // diagnostics, polled (never interrupts)
    .set VECTOR_TIMER, 0xF6      // local APIC timer, for sleeping

    .macro SET_GATE vector, handler, attributes
        lea \handler(%rip), %rax
        lea idt + \vector * 16(%rip), %rdi
        mov %ax, (%rdi)
        movw $SEL_KERNEL_CODE, 2(%rdi)
        movw $\attributes, 4(%rdi)
        shr $16, %rax
        mov %ax, 6(%rdi)
        shr $16, %rax
        mov %eax, 8(%rdi)
    .endm

    .macro WRMSR_IMM msr, high, low
        mov $\msr, %ecx
        mov $\low, %eax
        mov $\high, %edx
        wrmsr
    .endm

    // wrmsr(\msr, %rax) for a 64-bit value in RAX.
    .macro WRMSR_RAX msr
        mov $\msr, %ecx
        mov %rax, %rdx
        shr $32, %rdx
        wrmsr
    .endm

    .section .text.entry, "ax"
    .code64
    .globl _start
_start:
    cli
    cmp $MAX_VPS, %rdi
    jae halt_forever
    mov %rdi, %r12                  // VP index
    mov %rsi, %r13                  // boot information

    // Kernel stack: kernel_stacks + (vp + 1) * KERNEL_STACK_SIZE.
    lea 1(%r12), %rax
    shl $14, %rax
    lea kernel_stacks(%rip), %rsp
    add %rax, %rsp

    lgdt gdt_descriptor(%rip)
    mov $SEL_KERNEL_DATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    lea 1f(%rip), %rax
    pushq $SEL_KERNEL_CODE
    push %rax
    lretq
1:
    lea pml4(%rip), %rax
    mov %rax, %cr3

    // TSS: RSP0 = this kernel stack, I/O bitmap right after the 104-byte TSS; descriptor
    // base = &tss[vp].
    imul $TSS_STRIDE, %r12, %rbx
    lea tss_array(%rip), %rax
    add %rax, %rbx
    mov %rsp, 4(%rbx)
    movw $TSS_SIZE, 102(%rbx)
    movb $0xFF, TSS_SIZE + IO_BITMAP_SIZE(%rbx)
    lea 0(,%r12,8), %rdi
    lea gdt_tss(%rip), %rax
    lea (%rax,%rdi,2), %rdi         // descriptor = gdt_tss + vp * 16
    movw $TSS_LIMIT, (%rdi)
    mov %bx, 2(%rdi)
    mov %rbx, %rax
    shr $16, %rax
    mov %al, 4(%rdi)
    movb $0x89, 5(%rdi)             // present, 64-bit available TSS
    movb $0, 6(%rdi)
    mov %ah, 7(%rdi)
    shr $16, %rax
    mov %eax, 8(%rdi)
    lea SEL_TSS0(,%r12,8), %rax
    lea (%rax,%r12,8), %rax         // selector = 0x28 + vp * 16
    ltr %ax

    // The IDT, REFERENCE_TSC, GUEST_OS_ID and HYPERCALL are partition-wide and the bootstrap
    // processor's to set up. The others wait until it has, so none can take an interrupt
    // through an empty gate or call an empty hypercall page: the root starts every processor
    // at once, and which one runs first is the host scheduler's choice.
    test %r12, %r12
    jz 4f
5:  pause
    cmpb $0, partition_ready(%rip)
    je 5b
    jmp 2f
4:
    SET_GATE 0, fault_de, 0x8E00
    SET_GATE 6, invalid_opcode, 0x8E00
    SET_GATE 8, fault_df, 0x8E00
    SET_GATE 13, fault_gp, 0x8E00
    SET_GATE 14, fault_pf, 0x8E00
    SET_GATE VECTOR_SINT2, interrupt_sint2, 0x8E00
    SET_GATE VECTOR_SINT5, interrupt_sint5, 0x8E00
    SET_GATE VECTOR_SINT6, interrupt_sint6, 0x8E00
    SET_GATE VECTOR_TIMER, interrupt_timer, 0x8E00
2:
    lidt idt_descriptor(%rip)

    // x2APIC on (IA32_APIC_BASE.EN | EXTD), software-enabled (SVR = 0x1FF).
    mov $0x1B, %ecx
    rdmsr
    or $0xC00, %eax
    wrmsr
    WRMSR_IMM 0x80F, 0, 0x1FF
    // The timer the sleep service arms: one-shot on VECTOR_TIMER, 1 GHz bus divided by 1. Set
    // once here, so that sleeping writes only the initial count.
    WRMSR_IMM 0x83E, 0, 0xB
    WRMSR_IMM 0x832, 0, VECTOR_TIMER

    // The Hyper-V sequence. REFERENCE_TSC (Linux enables it first, in ms_hyperv_init_platform),
    // GUEST_OS_ID and HYPERCALL are partition-wide: the BSP writes them, then releases the
    // waiting processors (x86 stores are not reordered with older stores).
    test %r12, %r12
    jnz 3f
    lea reference_tsc_page(%rip), %rax
    or $1, %rax
    WRMSR_RAX MSR_REFERENCE_TSC
    WRMSR_IMM MSR_GUEST_OS_ID, GUEST_OS_ID_HIGH, GUEST_OS_ID_LOW
    lea hypercall_page(%rip), %rax
    or $1, %rax
    WRMSR_RAX MSR_HYPERCALL
    movb $1, partition_ready(%rip)
3:
    mov $MSR_VP_INDEX, %ecx
    rdmsr
    lea vp_index_seen(%rip), %rdi
    mov %eax, (%rdi,%r12,4)

    mov %r12, %rax
    shl $12, %rax
    lea vp_assist_pages(%rip), %rbx
    add %rbx, %rax
    or $1, %rax
    WRMSR_RAX MSR_VP_ASSIST_PAGE

    mov %r12, %rax
    shl $12, %rax
    lea message_pages(%rip), %rbx
    add %rbx, %rax
    or $1, %rax
    WRMSR_RAX MSR_SIMP

    mov %r12, %rax
    shl $12, %rax
    lea event_flag_pages(%rip), %rbx
    add %rbx, %rax
    or $1, %rax
    WRMSR_RAX MSR_SIEFP

    WRMSR_IMM MSR_SINT0 + 2, 0, VECTOR_SINT2
    WRMSR_IMM MSR_SINT0 + 5, 0, VECTOR_SINT5
    WRMSR_IMM MSR_SINT0 + 6, 0, 0x40000 | VECTOR_SINT6   // polling mode
    WRMSR_IMM MSR_SCONTROL, 0, 1

    // Drop to CPL3: user stack, IF=1, IOPL=3; guest_main(bootInfo, vpIndex), which never
    // returns. RSP is 8 below a 16-byte boundary, as after a CALL.
    lea 1(%r12), %rax
    shl $18, %rax
    lea user_stacks - 8(%rip), %rbx
    add %rbx, %rax
    pushq $SEL_USER_DATA
    push %rax
    pushq $0x3202
    pushq $SEL_USER_CODE
    lea guest_main(%rip), %rax
    push %rax
    mov %r13, %rdi
    mov %r12, %rsi
    iretq

halt_forever:
    cli
    hlt
    jmp halt_forever

// Interrupt handlers: count, EOI the x2APIC, return. One that ends the sleep service's `hlt`
// leaves the EOI to the service, which has the registers for it free: 4 emulated instructions
// here instead of 12. (The guest is linked below 2 GiB, so the address fits a sign-extended
// 32-bit immediate.)
    .macro SINT_HANDLER name, slot
\name:
    lock incq sint_interrupt_counts + \slot * 8(%rip)
    cmpq $sleep_woken, (%rsp)
    je 1f
    push %rax
    push %rcx
    push %rdx
    mov $0x80B, %ecx
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    pop %rdx
    pop %rcx
    pop %rax
1:  iretq
    .endm

    SINT_HANDLER interrupt_sint2, 0
    SINT_HANDLER interrupt_sint5, 1
    SINT_HANDLER interrupt_sint6, 2
    SINT_HANDLER interrupt_timer, 3

// Services for CPL3: each stub at the end of this file executes a `ud2` the #UD handler knows by
// its address; any other #UD from CPL3 (an Embedded Swift trap is one) is a fault. The handler
// runs on this processor's kernel stack with interrupts off (the sleep service turns them on to
// halt), returns past the `ud2` with RAX = result, and preserves every register but RAX, RCX,
// RDX and R8-R11. Every instruction here is emulated under kvm_pvm (about 1.5 us each), so the
// stubs do at CPL3 what they can, and sleep, the one service on a hot path, is tested first.
invalid_opcode:
    testb $3, 8(%rsp)               // from CPL3?
    jz fault_ud
    mov (%rsp), %r9
    cmp $sleep_trap, %r9
    je sys_sleep
    cmp $hv_end_of_message, %r9
    je sys_end_of_message
    cmp $hv_reference_time_msr, %r9
    je sys_reference_time
    cmp $hv_in_service_high, %r9
    je sys_in_service_high
    cmp $hv_park, %r9
    je sys_park
    cmp $hv_crash, %r9
    je sys_crash
    jmp fault_ud

// EOM, so the root delivers the next queued message.
sys_end_of_message:
    addq $2, (%rsp)
    mov $MSR_EOM, %ecx
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    iretq

// RAX = TIME_REF_COUNT.
sys_reference_time:
    addq $2, (%rsp)
    mov $MSR_TIME_REF_COUNT, %ecx
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
    iretq

// RAX = the x2APIC's in-service bits for vectors 0xE0-0xFF (ISR register 7), for the selftest:
// every vector this guest uses is among them, and none is in service while CPL3 runs.
sys_in_service_high:
    addq $2, (%rsp)
    mov $0x817, %ecx
    rdmsr
    iretq

// Halt until the local APIC timer (programmed at start-up) or any other interrupt fires. The
// `hv_sleep` stub has loaded ECX = the timer's initial-count MSR and EDX:EAX = nanoseconds.
// The interrupt that ends the `hlt` returns to `sleep_woken` with interrupts on and without
// its EOI, which is done here (an EOI with nothing in service does nothing, should the `hlt`
// end otherwise). Until that EOI the APIC holds back every other vector this guest uses (one
// priority class); one delivered after it is handled in full and keeps the registers.
sys_sleep:
    addq $2, (%rsp)
    wrmsr
    sti
    hlt
sleep_woken:
    mov $0x80B, %ecx                // EOI
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    mov $0x838, %ecx                // stop the timer if something else woke us
    wrmsr
    iretq

// Park this processor for good; it only services interrupts from then on.
sys_park:
    sti
1:  hlt
    jmp 1b

// Deliberately triple-fault: no IDT, then a fault at CPL3.
sys_crash:
    lidt null_idt_descriptor(%rip)
    lea user_fault(%rip), %rax
    mov %rax, (%rsp)
    iretq

user_fault:
    ud2

// Unexpected exceptions: report the vector and the exception frame (error code, RIP, CS,
// RFLAGS, RSP) on the debug port, then triple-fault so the root records a crash.
    .macro FAULT name, digits, errorCode
\name:
    .if \errorCode == 0
    pushq $0
    .endif
    lea fault_text(%rip), %rdi
    movw $\digits, (%rdi)
    jmp fault_common
    .endm

    FAULT fault_de, 0x3030, 0       // "00"
    FAULT fault_ud, 0x3630, 0       // "06"
    FAULT fault_df, 0x3830, 1       // "08"
    FAULT fault_gp, 0x3331, 1       // "13"
    FAULT fault_pf, 0x3431, 1       // "14"

fault_common:
    lea fault_frame(%rip), %rdi     // five words as 16 hex digits each, space-separated
    xor %esi, %esi
3:  mov (%rsp,%rsi,8), %rbx
    mov $16, %ecx
1:  rol $4, %rbx
    mov %ebx, %eax
    and $0xF, %eax
    cmp $10, %eax
    jb 2f
    add $39, %eax                   // 'a' - '0' - 10
2:  add $48, %eax                   // '0'
    mov %al, (%rdi)
    inc %rdi
    dec %ecx
    jnz 1b
    inc %rdi
    inc %esi
    cmp $5, %esi
    jb 3b
    lea fault_record(%rip), %rax
    mov $0x402, %dx
    out %eax, %dx
    // Return to CPL3 at user_fault with no IDT: the #UD there triple-faults.
    lidt null_idt_descriptor(%rip)
    add $8, %rsp                    // the error code
    lea user_fault(%rip), %rax
    mov %rax, (%rsp)
    movq $SEL_USER_CODE, 8(%rsp)
    movq $0x2, 16(%rsp)
    movq $SEL_USER_DATA, 32(%rsp)
    iretq

// Helpers Swift calls at CPL3 (System V ABI).
    .text
    .globl hv_hypercall
// UInt64 hv_hypercall(UInt64 control, UInt64 input, UInt64 output)
hv_hypercall:
    mov %rdx, %r8
    mov %rsi, %rdx
    mov %rdi, %rcx
    lea hypercall_page(%rip), %rax
    jmp *%rax

    .globl hv_signal_event
// UInt64 hv_signal_event(UInt64 connectionAndFlag): fast HvSignalEvent.
hv_signal_event:
    mov $0x1005D, %ecx
    mov %rdi, %rdx
    lea hypercall_page(%rip), %rax
    jmp *%rax

    // A service whose `ud2` is its first instruction: the #UD handler knows it by `name`.
    .macro SERVICE name
    .globl \name
\name:
    ud2
    ret
    .endm
    SERVICE hv_end_of_message
    SERVICE hv_park
    SERVICE hv_reference_time_msr
    SERVICE hv_in_service_high
    SERVICE hv_crash

    .globl hv_sleep
// void hv_sleep(UInt32 nanoseconds): the timer's initial-count MSR and the count are put in
// place here, where instructions run natively, for the one WRMSR the service does.
hv_sleep:
    mov $0x838, %ecx
    mov %edi, %eax
    xor %edx, %edx
sleep_trap:
    ud2
    ret

    .globl port_out32
port_out32:
    mov %edi, %edx
    mov %esi, %eax
    out %eax, %dx
    ret

    .globl port_out8
port_out8:
    mov %edi, %edx
    mov %esi, %eax
    out %al, %dx
    ret

    .globl port_in8
port_in8:
    mov %edi, %edx
    xor %eax, %eax
    in %dx, %al
    ret

// REP INSW / REP OUTSW for PIO data transfers (an emulated IDE disk's data register).
    .globl port_in_words
port_in_words:                      // rdi = port, rsi = buffer, rdx = words
    mov %rdx, %rcx
    mov %edi, %edx
    mov %rsi, %rdi
    cld
    rep insw
    ret

    .globl port_out_words
port_out_words:                     // rdi = port, rsi = buffer, rdx = words
    mov %rdx, %rcx
    mov %edi, %edx
    cld
    rep outsw
    ret

// REP INSL / REP OUTSL: the same with 32-bit elements (half the exits where each element is one).
    .globl port_in_dwords
port_in_dwords:                     // rdi = port, rsi = buffer, rdx = doublewords
    mov %rdx, %rcx
    mov %edi, %edx
    mov %rsi, %rdi
    cld
    rep insl
    ret

    .globl port_out_dwords
port_out_dwords:                    // rdi = port, rsi = buffer, rdx = doublewords
    mov %rdx, %rcx
    mov %edi, %edx
    cld
    rep outsl
    ret

    .globl read_tsc
read_tsc:
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    ret

    .globl cpu_relax
cpu_relax:
    pause
    ret

// Addresses of the static pages, for Swift.
    .macro ADDRESS_OF name, symbol
    .globl \name
\name:
    lea \symbol(%rip), %rax
    ret
    .endm
    ADDRESS_OF guest_message_pages, message_pages
    ADDRESS_OF guest_event_flag_pages, event_flag_pages
    ADDRESS_OF guest_sint_interrupt_counts, sint_interrupt_counts
    ADDRESS_OF guest_vp_index_seen, vp_index_seen
    ADDRESS_OF guest_heap, heap
    ADDRESS_OF guest_heap_end, heap_end
    ADDRESS_OF guest_reference_tsc_page, reference_tsc_page

// memcpy/memmove/memset/memcmp for the Embedded Swift runtime and the VSCs' ring copies.
// Plain SSE and 8-byte loops, not `rep movsb`/`rep stosb`: under kvm_pvm the string
// instructions run 6-8 times slower at CPL3 than these loops (4 KiB: ~1.3 us against ~0.2 us,
// measured in the guest), which capped guest-to-host ring throughput at ~3 GB/s.
    .globl memcpy
memcpy:
    mov %rdi, %rax
copy_forward:                       // rdi = destination, rsi = source, rdx = length
    cmp $64, %rdx
    jb 2f
1:  movups (%rsi), %xmm0
    movups 16(%rsi), %xmm1
    movups 32(%rsi), %xmm2
    movups 48(%rsi), %xmm3
    movups %xmm0, (%rdi)
    movups %xmm1, 16(%rdi)
    movups %xmm2, 32(%rdi)
    movups %xmm3, 48(%rdi)
    add $64, %rsi
    add $64, %rdi
    sub $64, %rdx
    cmp $64, %rdx
    jae 1b
2:  cmp $8, %rdx
    jb 3f
    mov (%rsi), %rcx
    mov %rcx, (%rdi)
    add $8, %rsi
    add $8, %rdi
    sub $8, %rdx
    jmp 2b
3:  test %rdx, %rdx
    jz 4f
    movzbl (%rsi), %ecx
    mov %cl, (%rdi)
    inc %rsi
    inc %rdi
    dec %rdx
    jmp 3b
4:  ret

    .globl memmove
memmove:
    mov %rdi, %rax
    mov %rdi, %rcx
    sub %rsi, %rcx                  // destination - source (unsigned)
    cmp %rdx, %rcx
    jae copy_forward                // destination before source, or no overlap: copy forwards
    add %rdx, %rsi                  // otherwise copy backwards from the end
    add %rdx, %rdi
1:  cmp $8, %rdx
    jb 2f
    sub $8, %rsi
    sub $8, %rdi
    mov (%rsi), %rcx
    mov %rcx, (%rdi)
    sub $8, %rdx
    jmp 1b
2:  test %rdx, %rdx
    jz 3f
    dec %rsi
    dec %rdi
    movzbl (%rsi), %ecx
    mov %cl, (%rdi)
    dec %rdx
    jmp 2b
3:  ret

    .globl memset
memset:
    mov %rdi, %rax
    movzbl %sil, %ecx
    movabs $0x0101010101010101, %r8
    imul %r8, %rcx                  // the byte in all eight lanes
1:  cmp $32, %rdx
    jb 2f
    mov %rcx, (%rdi)
    mov %rcx, 8(%rdi)
    mov %rcx, 16(%rdi)
    mov %rcx, 24(%rdi)
    add $32, %rdi
    sub $32, %rdx
    jmp 1b
2:  cmp $8, %rdx
    jb 3f
    mov %rcx, (%rdi)
    add $8, %rdi
    sub $8, %rdx
    jmp 2b
3:  test %rdx, %rdx
    jz 4f
    mov %cl, (%rdi)
    inc %rdi
    dec %rdx
    jmp 3b
4:  ret

    .globl memcmp
memcmp:
    xor %eax, %eax
    test %rdx, %rdx
    jz 2f
1:  movzbl (%rdi), %eax
    movzbl (%rsi), %ecx
    sub %ecx, %eax
    jnz 2f
    inc %rdi
    inc %rsi
    dec %rdx
    jnz 1b
2:  ret

    .section .data
    .align 16
gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF        // 0x08 kernel code, 64-bit
    .quad 0x00CF92000000FFFF        // 0x10 kernel data
    .quad 0x00CFF2000000FFFF        // 0x18 user data (DPL3)
    .quad 0x00AFFA000000FFFF        // 0x20 user code, 64-bit (DPL3)
gdt_tss:
    .fill MAX_VPS * 2, 8, 0         // 0x28 + 16 * vp: one TSS per processor
gdt_end:
gdt_descriptor:
    .short gdt_end - gdt - 1
    .quad gdt
idt_descriptor:
    .short 256 * 16 - 1
    .quad idt
partition_ready:                    // set by the BSP once the partition-wide state is in place
    .byte 0
    .align 8
null_idt_descriptor:
    .short 0
    .quad 0
fault_record:
    .long fault_text_end - fault_record - 4
    .ascii "guest: unexpected exception "
fault_text:
    .ascii "?? (error, RIP, CS, RFLAGS, RSP): "
fault_frame:
    .ascii "???????????????? ???????????????? ???????????????? ???????????????? ????????????????"
fault_text_end:

// Identity map of the first 1 GiB with 2 MiB user-accessible pages.
    .section .data.pagetables, "aw"
    .align 4096
pml4:
    .quad pdpt + 0x7
    .fill 511, 8, 0
pdpt:
    .quad page_directory + 0x7
    .fill 511, 8, 0
page_directory:
    .set address, 0
    .rept 512
    .quad address + 0x87            // present, writable, user, 2 MiB
    .set address, address + 0x200000
    .endr

    .section .bss.pages, "aw", @nobits
    .align 4096
    .globl hypercall_page
hypercall_page:       .skip 4096
reference_tsc_page:   .skip 4096
message_pages:        .skip 4096 * MAX_VPS
event_flag_pages:     .skip 4096 * MAX_VPS
vp_assist_pages:      .skip 4096 * MAX_VPS
idt:                  .skip 4096
kernel_stacks:        .skip KERNEL_STACK_SIZE * MAX_VPS
user_stacks:          .skip USER_STACK_SIZE * MAX_VPS
heap:                 .skip 0x800000
heap_end:

    .section .bss
    .align 64
tss_array:            .skip TSS_STRIDE * MAX_VPS
sint_interrupt_counts: .skip 8 * 16
vp_index_seen:        .skip 4 * MAX_VPS
