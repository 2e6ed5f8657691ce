    .section .text.boot, "ax"
    .global _start
_start:
    /* arm64 Image header */
    b aarch64_entry
    .long 0
    .quad 0x80000               /* text_offset: RAM base + 512 KiB */
    .quad __image_size          /* bytes to reserve, .bss included */
    .quad 0x2                   /* little endian, 4 KiB pages, 2 MiB-aligned base */
    .quad 0
    .quad 0
    .quad 0
    .ascii "ARM\x64"
    .long 0

aarch64_entry:
    mrs x21, cntvct_el0
    mov x20, x0                 /* device tree */

    mrs x1, CurrentEL
    lsr x1, x1, #2
    cmp x1, #2
    b.ne 1f
    mov x1, #(1 << 31)          /* HCR_EL2.RW: EL1 is AArch64 */
    msr hcr_el2, x1
    mov x1, #3                  /* EL1 may use the physical timer and counter */
    msr cnthctl_el2, x1
    msr cntvoff_el2, xzr
    /* With a GICv3 CPU interface (ID_AA64PFR0_EL1.GIC), let EL1 use its
     * system registers: ICC_SRE_EL2.SRE and .Enable. */
    mrs x1, id_aa64pfr0_el1
    ubfx x1, x1, #24, #4
    cbz x1, 5f
    mrs x1, s3_4_c12_c9_5       /* ICC_SRE_EL2 */
    mov x2, #0x9                /* Enable | SRE */
    orr x1, x1, x2
    msr s3_4_c12_c9_5, x1
    isb
5:
    mov x1, #0x3c5              /* EL1h, DAIF masked */
    msr spsr_el2, x1
    adr x1, 1f
    msr elr_el2, x1
    eret
1:
    mov x1, #(3 << 20)          /* CPACR_EL1.FPEN: no FP/SIMD traps */
    msr cpacr_el1, x1
    isb

    adrp x1, __bss_start
    add x1, x1, :lo12:__bss_start
    adrp x2, __bss_end
    add x2, x2, :lo12:__bss_end
2:  cmp x1, x2
    b.hs 3f
    str xzr, [x1], #8
    b 2b
3:
    adrp x1, boot_entry_ticks
    str x21, [x1, :lo12:boot_entry_ticks]

    adrp x1, aarch64_exception_vectors
    add x1, x1, :lo12:aarch64_exception_vectors
    msr vbar_el1, x1

    /* Level 1 table, 1 GiB blocks. Device: AF | attr0 | UXN | PXN.
     * Normal: AF | inner shareable | attr1. */
    adrp x1, boot_l1_table
    add x1, x1, :lo12:boot_l1_table
    mov x2, #0x401
    orr x2, x2, #(3 << 53)
    str x2, [x1]                /* 0 - 1 GiB: devices */
    mov x3, #(1 << 30)
    mov x2, #0x705
    add x2, x2, x3
    str x2, [x1, #8]            /* 1 - 2 GiB: RAM */
    add x2, x2, x3
    str x2, [x1, #16]           /* 2 - 3 GiB: RAM */
    add x2, x2, x3
    str x2, [x1, #24]           /* 3 - 4 GiB: RAM */
    mov x2, #0x401
    orr x2, x2, #(3 << 53)
    orr x2, x2, #(256 << 30)
    str x2, [x1, #(256 * 8)]    /* 256 GiB: high PCIe ECAM and MMIO */

    mov x2, #0xff00             /* attr0 device nGnRnE, attr1 normal WB */
    msr mair_el1, x2
    /* T0SZ=25 (39-bit), IRGN0/ORGN0 WBWA, SH0 inner, TG0 4K, EPD1, IPS 40-bit */
    ldr x2, =((25) | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 32))
    msr tcr_el1, x2
    msr ttbr0_el1, x1
    isb
    tlbi vmalle1
    dsb ish
    isb
    ldr x2, =0x30d01805         /* RES1 bits | I | C | M */
    msr sctlr_el1, x2
    isb

    adrp x1, boot_stack_top
    add x1, x1, :lo12:boot_stack_top
    mov sp, x1
    mov x0, x20
    bl hal_boot_entry
4:  wfe
    b 4b

/* Exception vectors: 16 entries of 128 bytes. IRQs from EL1 (entry 5)
 * go to the HAL's handler and return; they are unmasked only while the HAL
 * sleeps. Every other exception is fatal: each entry reports and never
 * returns. */
.macro aarch64_vector kind
    .balign 0x80
    mov x0, #\kind
    mrs x1, esr_el1
    mrs x2, elr_el1
    mrs x3, far_el1
    b hal_exception
.endm
    .section .text.exceptions, "ax"
    .balign 0x800
aarch64_exception_vectors:
    aarch64_vector 0
    aarch64_vector 1
    aarch64_vector 2
    aarch64_vector 3
    aarch64_vector 4
    .balign 0x80
    b aarch64_irq_entry
    aarch64_vector 6
    aarch64_vector 7
    aarch64_vector 8
    aarch64_vector 9
    aarch64_vector 10
    aarch64_vector 11
    aarch64_vector 12
    aarch64_vector 13
    aarch64_vector 14
    aarch64_vector 15

/* IRQ entry: saves what the AAPCS64 lets hal_irq clobber (x0-x18, x30,
 * all of v0-v31, FPSR, FPCR), the frame pointer and the exception return
 * state, calls hal_irq, restores, returns. */
    .balign 0x80
aarch64_irq_entry:
    sub sp, sp, #0x300
    stp x0, x1, [sp, #0x00]
    stp x2, x3, [sp, #0x10]
    stp x4, x5, [sp, #0x20]
    stp x6, x7, [sp, #0x30]
    stp x8, x9, [sp, #0x40]
    stp x10, x11, [sp, #0x50]
    stp x12, x13, [sp, #0x60]
    stp x14, x15, [sp, #0x70]
    stp x16, x17, [sp, #0x80]
    stp x18, x29, [sp, #0x90]
    mrs x0, elr_el1
    mrs x1, spsr_el1
    stp x30, x0, [sp, #0xa0]
    mrs x0, fpsr
    mrs x2, fpcr
    stp x1, x0, [sp, #0xb0]
    str x2, [sp, #0xc0]
    stp q0, q1, [sp, #0x100]
    stp q2, q3, [sp, #0x120]
    stp q4, q5, [sp, #0x140]
    stp q6, q7, [sp, #0x160]
    stp q8, q9, [sp, #0x180]
    stp q10, q11, [sp, #0x1a0]
    stp q12, q13, [sp, #0x1c0]
    stp q14, q15, [sp, #0x1e0]
    stp q16, q17, [sp, #0x200]
    stp q18, q19, [sp, #0x220]
    stp q20, q21, [sp, #0x240]
    stp q22, q23, [sp, #0x260]
    stp q24, q25, [sp, #0x280]
    stp q26, q27, [sp, #0x2a0]
    stp q28, q29, [sp, #0x2c0]
    stp q30, q31, [sp, #0x2e0]
    bl hal_irq
    ldp q0, q1, [sp, #0x100]
    ldp q2, q3, [sp, #0x120]
    ldp q4, q5, [sp, #0x140]
    ldp q6, q7, [sp, #0x160]
    ldp q8, q9, [sp, #0x180]
    ldp q10, q11, [sp, #0x1a0]
    ldp q12, q13, [sp, #0x1c0]
    ldp q14, q15, [sp, #0x1e0]
    ldp q16, q17, [sp, #0x200]
    ldp q18, q19, [sp, #0x220]
    ldp q20, q21, [sp, #0x240]
    ldp q22, q23, [sp, #0x260]
    ldp q24, q25, [sp, #0x280]
    ldp q26, q27, [sp, #0x2a0]
    ldp q28, q29, [sp, #0x2c0]
    ldp q30, q31, [sp, #0x2e0]
    ldr x2, [sp, #0xc0]
    ldp x1, x0, [sp, #0xb0]
    msr fpcr, x2
    msr fpsr, x0
    msr spsr_el1, x1
    ldp x30, x0, [sp, #0xa0]
    msr elr_el1, x0
    ldp x18, x29, [sp, #0x90]
    ldp x16, x17, [sp, #0x80]
    ldp x14, x15, [sp, #0x70]
    ldp x12, x13, [sp, #0x60]
    ldp x10, x11, [sp, #0x50]
    ldp x8, x9, [sp, #0x40]
    ldp x6, x7, [sp, #0x30]
    ldp x4, x5, [sp, #0x20]
    ldp x2, x3, [sp, #0x10]
    ldp x0, x1, [sp, #0x00]
    add sp, sp, #0x300
    eret

    .section .data.boot, "aw"
    .p2align 3
    .global boot_entry_ticks
boot_entry_ticks:
    .quad 0

    .section .bss.boot, "aw", @nobits
    .p2align 12
boot_l1_table:
    .skip 4096

/* The stack needs no zeroing, so it lives outside .bss. */
    .section .stack, "aw", @nobits
    .p2align 12
boot_stack:
    .skip 128 * 1024
boot_stack_top:
