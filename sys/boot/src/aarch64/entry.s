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

/* Exception vectors: 16 entries of 128 bytes. Every exception is fatal in
 * a poll-driven unikernel, so each entry reports and never returns. */
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
    aarch64_vector 5
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
