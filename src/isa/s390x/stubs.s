# The throw, resume and throw-to-entry stubs of cranelift-exn for s390x (ELF ABI): the source of
# the THROW_ROWS, RESUME_ROWS and TO_ENTRY_ROWS tables in mod.rs (read the comments there
# for what each instruction does). scripts/check-stubs assembles this file
# with `s390x-linux-gnu-as` and compares the bytes with the Rust rows.

    .text
# The host function's address: the 8-byte word just before the throw stub.
host_fn:
    .quad 0

throw:
    stmg %r14, %r15, 0x70(%r15)
    lgr %r1, %r15
    aghi %r15, -0x180
    stg %r1, 0(%r15)
    stg %r14, 0xa0(%r15)
    stg %r1, 0xa8(%r15)
    mvc 0xb0(8,%r15), 0(%r1)
    stmg %r2, %r6, 0xc8(%r15)
    mvc 0xf0(8,%r15), 0xa0(%r1)
    stmg %r6, %r13, 0xf8(%r15)
    std %f8, 0x138(%r15)
    std %f9, 0x140(%r15)
    std %f10, 0x148(%r15)
    std %f11, 0x150(%r15)
    std %f12, 0x158(%r15)
    std %f13, 0x160(%r15)
    std %f14, 0x168(%r15)
    std %f15, 0x170(%r15)
    larl %r1, host_fn
    lg %r1, 0(%r1)
    la %r2, 0xa0(%r15)
    basr %r14, %r1
    la %r2, 0xa0(%r15)

# The throw stub falls through into the resume stub.
resume:
    ld %f8, 0x98(%r2)
    ld %f9, 0xa0(%r2)
    ld %f10, 0xa8(%r2)
    ld %f11, 0xb0(%r2)
    ld %f12, 0xb8(%r2)
    ld %f13, 0xc0(%r2)
    ld %f14, 0xc8(%r2)
    ld %f15, 0xd0(%r2)
    lmg %r6, %r13, 0x58(%r2)
    lmg %r6, %r7, 0x18(%r2)
    lg %r1, 0(%r2)
    lg %r15, 8(%r2)
    br %r1

# The throw-to-entry stub, with its own host-function word before it.
    .balign 8
to_entry_host_fn:
    .quad 0
to_entry:
    larl %r1, to_entry_host_fn
    lg %r1, 0(%r1)
    basr %r14, %r1
    lg %r1, 8(%r2)
    lg %r15, 0x10(%r2)
    br %r1
