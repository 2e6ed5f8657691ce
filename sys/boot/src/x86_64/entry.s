/* PVH entry note: type 18 (XEN_ELFNOTE_PHYS32_ENTRY), name "Xen". */
    .section .note.Xen, "a"
    .p2align 2
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .p2align 2
    .quad pvh_start32
    .p2align 2

    .section .data.boot, "aw"
    .p2align 3
    .global boot_entry_tsc
boot_entry_tsc:
    .quad 0

    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .bss.boot, "aw", @nobits
    .p2align 12
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4 * 4096

/* The stack needs no zeroing, so it lives outside .bss. */
    .section .stack, "aw", @nobits
    .p2align 12
boot_stack:
    .skip 128 * 1024
boot_stack_top:

    .section .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    rdtsc
    movl %eax, boot_entry_tsc
    movl %edx, boot_entry_tsc + 4

    /* Zero .bss (16-byte aligned by the linker script) a dword at a time;
     * %ebx (start_info) survives. */
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    shrl $2, %ecx
    xorl %eax, %eax
    rep stosl

    /* PML4[0] -> PDPT; PDPT[0..4] -> four page directories. */
    movl $boot_pdpt + 0x3, boot_pml4
    movl $boot_pd + 0x3, boot_pdpt
    movl $boot_pd + 0x1003, boot_pdpt + 8
    movl $boot_pd + 0x2003, boot_pdpt + 16
    movl $boot_pd + 0x3003, boot_pdpt + 24

    /* 2048 2 MiB pages: present, writable, large; uncached from 3 GiB up. */
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    cmpl $1536, %ecx
    jb 2f
    orl $0x18, %eax
2:  movl %eax, boot_pd(, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jne 1b

    movl %cr4, %eax
    orl $0x20, %eax             /* PAE */
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx      /* EFER */
    rdmsr
    orl $0x100, %eax            /* LME */
    wrmsr
    movl %cr0, %eax
    andl $0x9fffffff, %eax      /* caches on: clear CD and NW */
    orl $0x80000001, %eax       /* PG | PE */
    movl %eax, %cr0
    lgdt boot_gdt_ptr
    ljmp $0x08, $pvh_start64

    .code64
pvh_start64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $boot_stack_top, %rsp
    movl %ebx, %edi
    xorl %ebp, %ebp
    call hal_boot_entry
3:  hlt
    jmp 3b

/* Exception entry: each stub pushes a zero error code where the CPU pushes
 * none, then its vector, so the common path sees one frame layout. */
    .section .text.exceptions, "ax"
    .p2align 4
x86_exception_common:
    movq (%rsp), %rdi           /* vector */
    movq 8(%rsp), %rsi          /* error code */
    movq 16(%rsp), %rdx         /* faulting RIP */
    movq %cr2, %rcx
    andq $-16, %rsp
    call hal_exception
4:  hlt
    jmp 4b

.macro x86_vector_noerr n
x86_vector_\n:
    pushq $0
    pushq $\n
    jmp x86_exception_common
.endm
.macro x86_vector_err n
x86_vector_\n:
    pushq $\n
    jmp x86_exception_common
.endm

    x86_vector_noerr 0
    x86_vector_noerr 1
    x86_vector_noerr 2
    x86_vector_noerr 3
    x86_vector_noerr 4
    x86_vector_noerr 5
    x86_vector_noerr 6
    x86_vector_noerr 7
    x86_vector_err 8
    x86_vector_noerr 9
    x86_vector_err 10
    x86_vector_err 11
    x86_vector_err 12
    x86_vector_err 13
    x86_vector_err 14
    x86_vector_noerr 15
    x86_vector_noerr 16
    x86_vector_err 17
    x86_vector_noerr 18
    x86_vector_noerr 19
    x86_vector_noerr 20
    x86_vector_err 21
    x86_vector_noerr 22
    x86_vector_noerr 23
    x86_vector_noerr 24
    x86_vector_noerr 25
    x86_vector_noerr 26
    x86_vector_noerr 27
    x86_vector_noerr 28
    x86_vector_err 29
    x86_vector_err 30
    x86_vector_noerr 31

    .section .rodata.exceptions, "a"
    .p2align 3
    .global x86_exception_vectors
x86_exception_vectors:
    .quad x86_vector_0, x86_vector_1, x86_vector_2, x86_vector_3
    .quad x86_vector_4, x86_vector_5, x86_vector_6, x86_vector_7
    .quad x86_vector_8, x86_vector_9, x86_vector_10, x86_vector_11
    .quad x86_vector_12, x86_vector_13, x86_vector_14, x86_vector_15
    .quad x86_vector_16, x86_vector_17, x86_vector_18, x86_vector_19
    .quad x86_vector_20, x86_vector_21, x86_vector_22, x86_vector_23
    .quad x86_vector_24, x86_vector_25, x86_vector_26, x86_vector_27
    .quad x86_vector_28, x86_vector_29, x86_vector_30, x86_vector_31
