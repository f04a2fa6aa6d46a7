// The throw, resume and throw-to-entry stubs of cranelift-exn for aarch64 (AAPCS64): the source of
// the THROW_ROWS, RESUME_ROWS and TO_ENTRY_ROWS tables in mod.rs (read the comments there
// for what each instruction does). scripts/check-stubs assembles this file
// with `aarch64-linux-gnu-as` and compares the bytes with the Rust rows.

    .text
// The host function's address: the 8-byte word just before the throw stub.
host_fn:
    .quad 0

throw:
    sub sp, sp, #0xf0
    stp x0, x1, [sp, #0x28]
    stp x2, x3, [sp, #0x38]
    stp x4, x5, [sp, #0x48]
    stp x19, x20, [sp, #0x58]
    stp x21, x22, [sp, #0x68]
    stp x23, x24, [sp, #0x78]
    stp x25, x26, [sp, #0x88]
    stp x27, x28, [sp, #0x98]
    stp d8, d9, [sp, #0xa8]
    stp d10, d11, [sp, #0xb8]
    stp d12, d13, [sp, #0xc8]
    stp d14, d15, [sp, #0xd8]
    add x9, sp, #0xf0
    stp x30, x9, [sp]
    str x29, [sp, #0x10]
    ldr x16, host_fn
    mov x0, sp
    blr x16
    mov x0, sp

// The throw stub falls through into the resume stub.
resume:
    ldp x19, x20, [x0, #0x58]
    ldp x21, x22, [x0, #0x68]
    ldp x23, x24, [x0, #0x78]
    ldp x25, x26, [x0, #0x88]
    ldp x27, x28, [x0, #0x98]
    ldp d8, d9, [x0, #0xa8]
    ldp d10, d11, [x0, #0xb8]
    ldp d12, d13, [x0, #0xc8]
    ldp d14, d15, [x0, #0xd8]
    ldr x16, [x0]
    ldr x17, [x0, #8]
    ldr x9, [x0, #0x10]
    ldr x1, [x0, #0x20]
    ldr x0, [x0, #0x18]
    mov x29, x9
    mov sp, x17
    br x16

// The throw-to-entry stub, with its own host-function word before it.
    .balign 8
to_entry_host_fn:
    .quad 0
to_entry:
    ldr x16, to_entry_host_fn
    blr x16
    ldr x16, [x0, #8]
    ldr x17, [x0, #0x10]
    ldr x29, [x0, #0x18]
    mov sp, x17
    br x16
