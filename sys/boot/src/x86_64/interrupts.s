/* Interrupt entry, vectors 32-255. Interrupts are only ever enabled while
 * the HAL sleeps, so these run on the sleeping code's stack. Each stub
 * pushes its vector and joins the common path, which saves every register
 * the SysV ABI lets a callee clobber (the guest is built without SSE, so
 * there is no vector state), calls hal_interrupt(vector) on an aligned
 * stack and returns with iretq. Stubs are 16 bytes apart; the HAL builds
 * the IDT from x86_interrupt_stubs + (vector - 32) * 16. */
    .section .text.interrupts, "ax"
    .p2align 4
x86_interrupt_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %rbx
    movq 80(%rsp), %rdi         /* vector */
    movq %rsp, %rbx
    andq $-16, %rsp
    cld
    call hal_interrupt
    movq %rbx, %rsp
    popq %rbx
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    addq $8, %rsp               /* vector */
    iretq

    .p2align 4
    .global x86_interrupt_stubs
x86_interrupt_stubs:
    .set x86_stub_vector, 32
    .rept 224
    .p2align 4
    pushq $x86_stub_vector
    jmp x86_interrupt_common
    .set x86_stub_vector, x86_stub_vector + 1
    .endr
