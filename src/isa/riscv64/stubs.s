# The throw, resume and throw-to-entry stubs of cranelift-exn for riscv64 (LP64D): the source of
# the THROW_ROWS, RESUME_ROWS and TO_ENTRY_ROWS tables in mod.rs (read the comments there
# for what each instruction does). scripts/check-stubs assembles this file
# with `riscv64-linux-gnu-as -march=rv64gc -mno-relax` and compares the bytes with the Rust rows.

    .option norvc
    # Full 32-bit instructions only: they run whatever Cranelift's has_c.

    .text
# The host function's address: the 8-byte word just before the throw stub.
host_fn:
    .quad 0

throw:
    addi sp, sp, -0x110
    sd ra, 0(sp)
    addi t0, sp, 0x110
    sd t0, 8(sp)
    sd s0, 0x10(sp)
    sd a0, 0x28(sp)
    sd a1, 0x30(sp)
    sd a2, 0x38(sp)
    sd a3, 0x40(sp)
    sd a4, 0x48(sp)
    sd a5, 0x50(sp)
    sd s1, 0x58(sp)
    sd s2, 0x60(sp)
    sd s3, 0x68(sp)
    sd s4, 0x70(sp)
    sd s5, 0x78(sp)
    sd s6, 0x80(sp)
    sd s7, 0x88(sp)
    sd s8, 0x90(sp)
    sd s9, 0x98(sp)
    sd s10, 0xa0(sp)
    sd s11, 0xa8(sp)
    fsd fs0, 0xb0(sp)
    fsd fs1, 0xb8(sp)
    fsd fs2, 0xc0(sp)
    fsd fs3, 0xc8(sp)
    fsd fs4, 0xd0(sp)
    fsd fs5, 0xd8(sp)
    fsd fs6, 0xe0(sp)
    fsd fs7, 0xe8(sp)
    fsd fs8, 0xf0(sp)
    fsd fs9, 0xf8(sp)
    fsd fs10, 0x100(sp)
    fsd fs11, 0x108(sp)
    # auipc at throw + 0x88: host_fn is 0x90 bytes before it.
    auipc t1, 0
    ld t1, -0x90(t1)
    mv a0, sp
    jalr t1
    mv a0, sp

# The throw stub falls through into the resume stub.
resume:
    ld s1, 0x58(a0)
    ld s2, 0x60(a0)
    ld s3, 0x68(a0)
    ld s4, 0x70(a0)
    ld s5, 0x78(a0)
    ld s6, 0x80(a0)
    ld s7, 0x88(a0)
    ld s8, 0x90(a0)
    ld s9, 0x98(a0)
    ld s10, 0xa0(a0)
    ld s11, 0xa8(a0)
    fld fs0, 0xb0(a0)
    fld fs1, 0xb8(a0)
    fld fs2, 0xc0(a0)
    fld fs3, 0xc8(a0)
    fld fs4, 0xd0(a0)
    fld fs5, 0xd8(a0)
    fld fs6, 0xe0(a0)
    fld fs7, 0xe8(a0)
    fld fs8, 0xf0(a0)
    fld fs9, 0xf8(a0)
    fld fs10, 0x100(a0)
    fld fs11, 0x108(a0)
    ld a1, 0x20(a0)
    ld t1, 0(a0)
    ld t2, 0x10(a0)
    ld t3, 8(a0)
    ld a0, 0x18(a0)
    mv s0, t2
    mv sp, t3
    jr t1

# The throw-to-entry stub, with its own host-function word before it.
    .balign 8
to_entry_host_fn:
    .quad 0
to_entry:
    auipc t1, 0
    ld t1, -8(t1)
    jalr t1
    ld t1, 8(a0)
    ld s0, 0x18(a0)
    ld sp, 0x10(a0)
    jr t1
