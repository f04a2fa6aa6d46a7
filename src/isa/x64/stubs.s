# The throw, resume and throw-to-entry stubs of cranelift-exn for x86-64 (System V): the source of
# the THROW_ROWS, RESUME_ROWS and TO_ENTRY_ROWS tables in mod.rs (read the comments there
# for what each instruction does). scripts/check-stubs assembles this file
# with `as --64` and compares the bytes with the Rust rows.

    .text
# The host function's address: the 8-byte word just before the throw stub.
host_fn:
    .quad 0

throw:
    subq $0x88, %rsp
    movq %rdi, 0x28(%rsp)
    movq %rsi, 0x30(%rsp)
    movq %rdx, 0x38(%rsp)
    movq %rcx, 0x40(%rsp)
    movq %r8, 0x48(%rsp)
    movq %r9, 0x50(%rsp)
    movq %rbx, 0x58(%rsp)
    movq %r12, 0x60(%rsp)
    movq %r13, 0x68(%rsp)
    movq %r14, 0x70(%rsp)
    movq %r15, 0x78(%rsp)
    movq %rbp, 0x10(%rsp)
    movq 0x88(%rsp), %rax
    movq %rax, (%rsp)
    leaq 0x90(%rsp), %rax
    movq %rax, 8(%rsp)
    movq %rsp, %rdi
    callq *host_fn(%rip)
    movq %rsp, %rdi

# The throw stub falls through into the resume stub.
resume:
    movq 0x58(%rdi), %rbx
    movq 0x60(%rdi), %r12
    movq 0x68(%rdi), %r13
    movq 0x70(%rdi), %r14
    movq 0x78(%rdi), %r15
    movq 0x18(%rdi), %rax
    movq 0x20(%rdi), %rdx
    movq 0x10(%rdi), %rbp
    movq 0x28(%rdi), %rsi
    movq (%rdi), %rcx
    movq 8(%rdi), %rsp
    testq %rsi, %rsi
    je 2f
    cmpq $4, %rsi
    ja 2f
1:  leaq 3f(%rip), %rdi
    pushq %rdi
    retq
3:  decq %rsi
    jne 1b
2:  jmpq *%rcx

# The throw-to-entry stub, with its own host-function word before it.
    .balign 8
to_entry_host_fn:
    .quad 0
to_entry:
    pushq %rax
    callq *to_entry_host_fn(%rip)
    movq 8(%rax), %rcx
    movq 0x18(%rax), %rbp
    movq 0x10(%rax), %rsp
    jmpq *%rcx
