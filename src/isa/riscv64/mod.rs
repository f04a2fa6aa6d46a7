//! riscv64 (Linux, RV64GC, LP64D): frame layout, registers, relocations and
//! stubs (private to the crate), and the public [`zcb`] module for
//! machines that carry out Zcb instructions themselves.
//!
//! Facts taken from Cranelift 0.135's riscv64 backend (`isa/riscv64/abi.rs`,
//! `inst/emit.rs`):
//!
//! * With `preserve_frame_pointers` every function starts with
//!   `addi sp, sp, -16; sd ra, 8(sp); sd s0, 0(sp); mv s0, sp`, so the frame
//!   pointer s0 points at the saved caller s0, with the return address just
//!   above it.
//! * The clobber area starts immediately below that pair: `gen_clobber_save`
//!   moves sp down by the whole frame and stores the n-th clobbered register
//!   at `sp + stack_size - cur_offset - 8`, i.e. at `s0 - cur_offset - 8`,
//!   and describes it with `clobber_offset = clobber_size - cur_offset - 8`
//!   after `DefineNewFrame { offset_downward_to_clobbers: clobber_size }`.
//!   The shared decoding, `isa::fp_relative_saved_registers` (`clobber_offset -
//!   offset_downward_to_clobbers`), therefore gives the right fp offset. (When
//!   a tail-call callee needs more incoming-argument space, the prologue moves
//!   the (s0, ra) pair down and re-points s0 at it before the clobbers, so the
//!   relation still holds.)
//! * Every relocation site is emitted with `emit_uncompressed`, so even with
//!   `has_c`/`has_zca` the patched instructions are full 32-bit `auipc`,
//!   `jalr`, `ld` and `addi` words; [`IsaBehaviour::apply_relocation`] rejects
//!   anything else as [`RelocError::UnexpectedInstruction`].

use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::isa::unwind::UnwindInst;

use super::{
    Arch, FrameLinks, IsaBehaviour, IsaSpec, Reg, RegisterNames, RelocError, RelocSite,
    SavedRegister, Stub, StubRow, fp_relative_saved_registers, read_le32, stub_code, stub_len,
    write_le32,
};

pub mod zcb;

/// The code of riscv64.
pub(crate) struct Riscv64;

const RA: Reg = Reg::int(1);
const SP: Reg = Reg::int(2);
const S0: Reg = Reg::int(8);
const A0: Reg = Reg::int(10);
const A1: Reg = Reg::int(11);

/// s1, s2–s11, then fs0, fs1, fs2–fs11 (psABI callee-saved registers less
/// s0, the frame pointer, which travels in the context's FP word).
///
/// Cranelift itself treats fs1 (f9) as caller-saved (it is missing from
/// `DEFAULT_CALLEE_SAVES` in its `abi.rs`), so Cranelift code never saves it;
/// capturing and reinstalling it here is still right for psABI callers.
static CALLEE_SAVED: [Reg; 23] = [
    Reg::int(9),
    Reg::int(18),
    Reg::int(19),
    Reg::int(20),
    Reg::int(21),
    Reg::int(22),
    Reg::int(23),
    Reg::int(24),
    Reg::int(25),
    Reg::int(26),
    Reg::int(27),
    Reg::float(8),
    Reg::float(9),
    Reg::float(18),
    Reg::float(19),
    Reg::float(20),
    Reg::float(21),
    Reg::float(22),
    Reg::float(23),
    Reg::float(24),
    Reg::float(25),
    Reg::float(26),
    Reg::float(27),
];

/// a0–a7.
static INT_ARGS: [Reg; 8] = [
    Reg::int(10),
    Reg::int(11),
    Reg::int(12),
    Reg::int(13),
    Reg::int(14),
    Reg::int(15),
    Reg::int(16),
    Reg::int(17),
];

// Both stubs (source: `stubs.s` beside this file) were assembled with
// `riscv64-linux-gnu-as -march=rv64gc -mno-relax` under `.option norvc` (no
// compressed instructions, so they run on any RV64GC hart whatever Cranelift's
// `has_c` setting) and extracted with `objcopy -O binary`.
//
// Context layout (words of 8 bytes, see `super::context`): 0 PC, 1 SP, 2 FP,
// 3–4 payloads, 5–10 the six arguments, 11–21 s1, s2–s11, 22–33 fs0, fs1,
// fs2–fs11. That is 34 words = 272 (0x110) bytes, already a multiple of 16.
// Each row of the stubs is one instruction: its bytes and capstone text.

/// Throw-capture stub (39 instructions).
///
/// On entry sp is 16-byte aligned (psABI), ra holds the return address into
/// the JIT caller and a0–a5 the six arguments. The stub takes a 0x110-byte
/// frame that *is* the context, so sp stays 16-byte aligned for the host call
/// and the context address is simply sp. The captured SP is the entry sp
/// (`sp + 0x110`; a RISC-V call pushes nothing), computed in t0, which is
/// neither callee-saved nor an argument. The captured FP is s0 itself.
///
/// The host function's address is the 8-byte word just before the stub:
/// `auipc t1, 0` sits at offset 0x88, so the word is at `t1 - 0x90`. t1 (x6)
/// rather than t0 (x5) carries it because the RISC-V return-address-stack
/// hints treat x5 as a link register: `jalr ra, t1` is a plain call for the
/// branch predictor. The host call clobbers ra and every caller-saved
/// register but not sp, so after it `mv a0, sp` re-derives the context
/// address and execution falls through into the resume stub.
static THROW_CODE: [u8; stub_len(THROW_ROWS)] = stub_code(THROW_ROWS);

/// [`THROW_CODE`], one row per instruction: bytes and capstone text.
#[rustfmt::skip]
const THROW_ROWS: &[StubRow] = &[
    (&[0x13, 0x01, 0x01, 0xef], "addi sp, sp, -0x110"),
    (&[0x23, 0x30, 0x11, 0x00], "sd ra, 0(sp)"),
    (&[0x93, 0x02, 0x01, 0x11], "addi t0, sp, 0x110"),
    (&[0x23, 0x34, 0x51, 0x00], "sd t0, 8(sp)"),
    (&[0x23, 0x38, 0x81, 0x00], "sd s0, 0x10(sp)"),
    (&[0x23, 0x34, 0xa1, 0x02], "sd a0, 0x28(sp)"),
    (&[0x23, 0x38, 0xb1, 0x02], "sd a1, 0x30(sp)"),
    (&[0x23, 0x3c, 0xc1, 0x02], "sd a2, 0x38(sp)"),
    (&[0x23, 0x30, 0xd1, 0x04], "sd a3, 0x40(sp)"),
    (&[0x23, 0x34, 0xe1, 0x04], "sd a4, 0x48(sp)"),
    (&[0x23, 0x38, 0xf1, 0x04], "sd a5, 0x50(sp)"),
    (&[0x23, 0x3c, 0x91, 0x04], "sd s1, 0x58(sp)"),
    (&[0x23, 0x30, 0x21, 0x07], "sd s2, 0x60(sp)"),
    (&[0x23, 0x34, 0x31, 0x07], "sd s3, 0x68(sp)"),
    (&[0x23, 0x38, 0x41, 0x07], "sd s4, 0x70(sp)"),
    (&[0x23, 0x3c, 0x51, 0x07], "sd s5, 0x78(sp)"),
    (&[0x23, 0x30, 0x61, 0x09], "sd s6, 0x80(sp)"),
    (&[0x23, 0x34, 0x71, 0x09], "sd s7, 0x88(sp)"),
    (&[0x23, 0x38, 0x81, 0x09], "sd s8, 0x90(sp)"),
    (&[0x23, 0x3c, 0x91, 0x09], "sd s9, 0x98(sp)"),
    (&[0x23, 0x30, 0xa1, 0x0b], "sd s10, 0xa0(sp)"),
    (&[0x23, 0x34, 0xb1, 0x0b], "sd s11, 0xa8(sp)"),
    (&[0x27, 0x38, 0x81, 0x0a], "fsd fs0, 0xb0(sp)"),
    (&[0x27, 0x3c, 0x91, 0x0a], "fsd fs1, 0xb8(sp)"),
    (&[0x27, 0x30, 0x21, 0x0d], "fsd fs2, 0xc0(sp)"),
    (&[0x27, 0x34, 0x31, 0x0d], "fsd fs3, 0xc8(sp)"),
    (&[0x27, 0x38, 0x41, 0x0d], "fsd fs4, 0xd0(sp)"),
    (&[0x27, 0x3c, 0x51, 0x0d], "fsd fs5, 0xd8(sp)"),
    (&[0x27, 0x30, 0x61, 0x0f], "fsd fs6, 0xe0(sp)"),
    (&[0x27, 0x34, 0x71, 0x0f], "fsd fs7, 0xe8(sp)"),
    (&[0x27, 0x38, 0x81, 0x0f], "fsd fs8, 0xf0(sp)"),
    (&[0x27, 0x3c, 0x91, 0x0f], "fsd fs9, 0xf8(sp)"),
    (&[0x27, 0x30, 0xa1, 0x11], "fsd fs10, 0x100(sp)"),
    (&[0x27, 0x34, 0xb1, 0x11], "fsd fs11, 0x108(sp)"),
    (&[0x17, 0x03, 0x00, 0x00], "auipc t1, 0"),
    (&[0x03, 0x33, 0x03, 0xf7], "ld t1, -0x90(t1)"),
    (&[0x13, 0x05, 0x01, 0x00], "mv a0, sp"),
    (&[0xe7, 0x00, 0x03, 0x00], "jalr t1"),
    (&[0x13, 0x05, 0x01, 0x00], "mv a0, sp"),
];

/// Resume stub (31 instructions).
///
/// The context address arrives in a0, which is also the first payload
/// register, so a0 stays the base of every load and is itself loaded last.
/// The order:
///
/// 1. s1, s2–s11 and fs0–fs11 straight from the context (none of them is
///    the base register);
/// 2. a1 (payload1);
/// 3. the target pc into t1, the new fp into t2 and the new sp into t3 —
///    scratch registers that are neither callee-saved nor payload registers;
/// 4. a0 (payload0): the last read of the context, which also retires the
///    base register;
/// 5. only now s0 and sp, from t2 and t3. Writing sp last matters: the
///    context usually lies below the new sp (it is the throw stub's frame),
///    where a signal handler may overwrite it as soon as sp moves above it;
/// 6. `jr t1` (t1 rather than t0, which the return-address-stack hints would
///    treat as a return).
///
/// So the registers are installed in the contract's order — saved registers,
/// payloads, fp, sp — and no register is written while it is still needed.
static RESUME_CODE: [u8; stub_len(RESUME_ROWS)] = stub_code(RESUME_ROWS);

/// [`RESUME_CODE`], one row per instruction: bytes and capstone text.
#[rustfmt::skip]
const RESUME_ROWS: &[StubRow] = &[
    (&[0x83, 0x34, 0x85, 0x05], "ld s1, 0x58(a0)"),
    (&[0x03, 0x39, 0x05, 0x06], "ld s2, 0x60(a0)"),
    (&[0x83, 0x39, 0x85, 0x06], "ld s3, 0x68(a0)"),
    (&[0x03, 0x3a, 0x05, 0x07], "ld s4, 0x70(a0)"),
    (&[0x83, 0x3a, 0x85, 0x07], "ld s5, 0x78(a0)"),
    (&[0x03, 0x3b, 0x05, 0x08], "ld s6, 0x80(a0)"),
    (&[0x83, 0x3b, 0x85, 0x08], "ld s7, 0x88(a0)"),
    (&[0x03, 0x3c, 0x05, 0x09], "ld s8, 0x90(a0)"),
    (&[0x83, 0x3c, 0x85, 0x09], "ld s9, 0x98(a0)"),
    (&[0x03, 0x3d, 0x05, 0x0a], "ld s10, 0xa0(a0)"),
    (&[0x83, 0x3d, 0x85, 0x0a], "ld s11, 0xa8(a0)"),
    (&[0x07, 0x34, 0x05, 0x0b], "fld fs0, 0xb0(a0)"),
    (&[0x87, 0x34, 0x85, 0x0b], "fld fs1, 0xb8(a0)"),
    (&[0x07, 0x39, 0x05, 0x0c], "fld fs2, 0xc0(a0)"),
    (&[0x87, 0x39, 0x85, 0x0c], "fld fs3, 0xc8(a0)"),
    (&[0x07, 0x3a, 0x05, 0x0d], "fld fs4, 0xd0(a0)"),
    (&[0x87, 0x3a, 0x85, 0x0d], "fld fs5, 0xd8(a0)"),
    (&[0x07, 0x3b, 0x05, 0x0e], "fld fs6, 0xe0(a0)"),
    (&[0x87, 0x3b, 0x85, 0x0e], "fld fs7, 0xe8(a0)"),
    (&[0x07, 0x3c, 0x05, 0x0f], "fld fs8, 0xf0(a0)"),
    (&[0x87, 0x3c, 0x85, 0x0f], "fld fs9, 0xf8(a0)"),
    (&[0x07, 0x3d, 0x05, 0x10], "fld fs10, 0x100(a0)"),
    (&[0x87, 0x3d, 0x85, 0x10], "fld fs11, 0x108(a0)"),
    (&[0x83, 0x35, 0x05, 0x02], "ld a1, 0x20(a0)"),
    (&[0x03, 0x33, 0x05, 0x00], "ld t1, 0(a0)"),
    (&[0x83, 0x33, 0x05, 0x01], "ld t2, 0x10(a0)"),
    (&[0x03, 0x3e, 0x85, 0x00], "ld t3, 8(a0)"),
    (&[0x03, 0x35, 0x85, 0x01], "ld a0, 0x18(a0)"),
    (&[0x13, 0x84, 0x03, 0x00], "mv s0, t2"),
    (&[0x13, 0x01, 0x0e, 0x00], "mv sp, t3"),
    (&[0x67, 0x00, 0x03, 0x00], "jr t1"),
];

// ---------------------------------------------------------------------------
// Instruction fields.

const OPCODE_MASK: u32 = 0x7f;
const OP_AUIPC: u32 = 0x17;
const OP_JALR: u32 = 0x67;
/// I-type major opcodes a `%pcrel_lo12` may patch: LOAD, LOAD-FP, OP-IMM,
/// OP-IMM-32 and JALR.
const I_TYPE_OPCODES: [u32; 5] = [0x03, 0x07, 0x13, 0x1b, OP_JALR];

fn rd(insn: u32) -> u32 {
    (insn >> 7) & 0x1f
}

fn rs1(insn: u32) -> u32 {
    (insn >> 15) & 0x1f
}

fn funct3(insn: u32) -> u32 {
    (insn >> 12) & 0x7
}

/// Split a pc-relative displacement into the `auipc` immediate and the
/// sign-extended 12-bit immediate of the instruction after it, so that
/// `(hi20 << 12) + lo12 == value`. `hi20` is rounded (`+ 0x800`) to make up
/// for the sign extension of `lo12`. The reach is therefore
/// `[-2^31 - 0x800, 2^31 - 0x801]`.
fn split_hi20_lo12(value: i64) -> Result<(i32, i32), RelocError> {
    const MIN: i64 = -(1 << 31) - 0x800;
    const MAX: i64 = (1 << 31) - 0x801;
    if !(MIN..=MAX).contains(&value) {
        return Err(RelocError::OutOfRange { value });
    }
    let hi20 = (value + 0x800) >> 12;
    let lo12 = value - (hi20 << 12);
    debug_assert!((-(1 << 19)..(1 << 19)).contains(&hi20));
    debug_assert!((-0x800..0x800).contains(&lo12));
    Ok((hi20 as i32, lo12 as i32))
}

fn with_hi20(auipc: u32, hi20: i32) -> u32 {
    (auipc & 0xfff) | ((hi20 as u32) << 12)
}

fn with_lo12(insn: u32, lo12: i32) -> u32 {
    (insn & 0x000f_ffff) | (((lo12 as u32) & 0xfff) << 20)
}

fn read_insn(code: &[u8], offset: usize) -> Result<u32, RelocError> {
    read_le32(code, offset).ok_or(RelocError::UnexpectedInstruction)
}

/// The `auipc` at `offset`, or [`RelocError::UnexpectedInstruction`].
fn read_auipc(code: &[u8], offset: usize) -> Result<u32, RelocError> {
    let insn = read_insn(code, offset)?;
    if insn & OPCODE_MASK == OP_AUIPC {
        Ok(insn)
    } else {
        Err(RelocError::UnexpectedInstruction)
    }
}

/// Throw-to-entry stub ([`crate::abi::THROW_TO_ENTRY_SYMBOL`]): the O(1)
/// delivery, with no context. The tag and payloads arrive in a0, a1 and a2
/// and go on, untouched, to the host function (the word 8 bytes before the
/// stub, through t1 as in the throw stub), which records them as the call's
/// outcome and returns the innermost call's buffer in a0 (`jalr` clobbers
/// ra: nothing returns here). The stub installs the handler record the entry
/// trampoline keeps in the buffer header (pc at 8 through t1, fp at 24, sp
/// at 16 last) and jumps: the trampoline's handler needs nothing but its
/// frame. Full 32-bit instructions, like the other stubs.
static TO_ENTRY_CODE: [u8; stub_len(TO_ENTRY_ROWS)] = stub_code(TO_ENTRY_ROWS);

/// [`TO_ENTRY_CODE`], one row per instruction: bytes and capstone text.
#[rustfmt::skip]
const TO_ENTRY_ROWS: &[StubRow] = &[
    (&[0x17, 0x03, 0x00, 0x00], "auipc t1, 0"),
    (&[0x03, 0x33, 0x83, 0xff], "ld t1, -8(t1)"),
    (&[0xe7, 0x00, 0x03, 0x00], "jalr t1"),
    (&[0x03, 0x33, 0x85, 0x00], "ld t1, 8(a0)"),
    (&[0x03, 0x34, 0x85, 0x01], "ld s0, 0x18(a0)"),
    (&[0x03, 0x31, 0x05, 0x01], "ld sp, 0x10(a0)"),
    (&[0x67, 0x00, 0x03, 0x00], "jr t1"),
];

/// The facts of riscv64.
pub(super) const SPEC: IsaSpec = IsaSpec {
    arch: Arch::Riscv64,
    // addi sp, sp, -16; sd ra, 8(sp); sd s0, 0(sp); mv s0, sp:
    // [s0] = caller's s0, [s0 + 8] = return address.
    frame_links: FrameLinks {
        caller_fp_offset: 0,
        return_address_offset: 8,
        return_address_mask: u64::MAX,
    },
    payload_regs: [A0, A1],
    callee_saved: &CALLEE_SAVED,
    stack_pointer: SP,
    frame_pointer: Some(S0),
    int_arg_regs: &INT_ARGS,
    // `a0` (x10): the C convention's first integer result.
    result_register: A0,
    trap_record_skew: 0,
    link_register: Some(RA),
    prologue_frame_value: None,
    register_names: RegisterNames {
        int: &[
            "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3",
            "a4", "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11",
            "t3", "t4", "t5", "t6",
        ],
        int_prefix: "x",
        float: &[
            "ft0", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6", "ft7", "fs0", "fs1", "fa0", "fa1",
            "fa2", "fa3", "fa4", "fa5", "fa6", "fa7", "fs2", "fs3", "fs4", "fs5", "fs6", "fs7",
            "fs8", "fs9", "fs10", "fs11", "ft8", "ft9", "ft10", "ft11",
        ],
        float_prefix: "f",
    },
    // Only the `auipc` of `load_ext_name_got`; its `%pcrel_lo12` partner
    // is a label relocation and gets the slot address through `value_at`.
    got_relocations: &[Reloc::RiscvGotHi20],
    throw_stub: Stub {
        code: &THROW_CODE,
        rows: THROW_ROWS,
    },
    resume_stub: Stub {
        code: &RESUME_CODE,
        rows: RESUME_ROWS,
    },
    to_entry_stub: Stub {
        code: &TO_ENTRY_CODE,
        rows: TO_ENTRY_ROWS,
    },
    return_stack_depth: 0,
    behaviour: &Riscv64,
};

/// Cranelift 0.135's riscv64 stack-probe loop (`StackProbeLoop`, emitted
/// for frames of more than three probe intervals), after `li t6, N*g; li
/// t3, g`: it probes `sp - N*g` first and then walks *up* towards sp, so
/// its first store can land up to a frame's size below the stack — past
/// the guard page, in whatever memory lies there — before any probe reaches
/// the guard page. The `j` is `c.j` when compressed instructions are on.
const PROBE_LOOP_ROWS: [StubRow; 5] = [
    (&[0x63, 0x7a, 0xfe, 0x01], "bgeu t3, t6, 0x14"),
    (&[0x33, 0x0f, 0xf1, 0x41], "sub t5, sp, t6"),
    (&[0x23, 0x00, 0x0f, 0x00], "sb zero, 0(t5)"),
    (&[0xb3, 0x8f, 0xcf, 0x41], "sub t6, t6, t3"),
    (&[0x6f, 0xf0, 0x1f, 0xff], "j -0x10"),
];
const PROBE_LOOP_C_ROWS: [StubRow; 5] = [
    (&[0x63, 0x79, 0xfe, 0x01], "bgeu t3, t6, 0x12"),
    (&[0x33, 0x0f, 0xf1, 0x41], "sub t5, sp, t6"),
    (&[0x23, 0x00, 0x0f, 0x00], "sb zero, 0(t5)"),
    (&[0xb3, 0x8f, 0xcf, 0x41], "sub t6, t6, t3"),
    (&[0xc5, 0xbf], "c.j -0x10"),
];

/// What replaces [`PROBE_LOOP_ROWS`]: probes from `sp - g` down, 2047
/// bytes apart (the largest `addi` step; denser than any guard page), up to
/// and including the first at or past `sp - N*g`, so every store is within
/// a page of one that succeeded. The probe no longer sits at the offset
/// Cranelift recorded a `heap_oob` trap for (now the `bgeu`, which cannot
/// fault): a probe that hits the guard page is a stack overflow.
const ORDERED_PROBE_LOOP_ROWS: [StubRow; 5] = [
    (&[0x33, 0x0f, 0xc1, 0x41], "sub t5, sp, t3"),
    (&[0x23, 0x00, 0x0f, 0x00], "sb zero, 0(t5)"),
    (&[0x63, 0x76, 0xfe, 0x01], "bgeu t3, t6, 0xc"),
    (&[0x13, 0x0e, 0xfe, 0x7f], "addi t3, t3, 0x7ff"),
    (&[0x6f, 0xf0, 0x1f, 0xff], "j -0x10"),
];
const ORDERED_PROBE_LOOP_C_ROWS: [StubRow; 5] = [
    (&[0x33, 0x0f, 0xc1, 0x41], "sub t5, sp, t3"),
    (&[0x23, 0x00, 0x0f, 0x00], "sb zero, 0(t5)"),
    (&[0x63, 0x75, 0xfe, 0x01], "bgeu t3, t6, 0xa"),
    (&[0x13, 0x0e, 0xfe, 0x7f], "addi t3, t3, 0x7ff"),
    (&[0xc5, 0xbf], "c.j -0x10"),
];

const PROBE_LOOP: [u8; stub_len(&PROBE_LOOP_ROWS)] = stub_code(&PROBE_LOOP_ROWS);
const PROBE_LOOP_C: [u8; stub_len(&PROBE_LOOP_C_ROWS)] = stub_code(&PROBE_LOOP_C_ROWS);
const ORDERED_PROBE_LOOP: [u8; stub_len(&ORDERED_PROBE_LOOP_ROWS)] =
    stub_code(&ORDERED_PROBE_LOOP_ROWS);
const ORDERED_PROBE_LOOP_C: [u8; stub_len(&ORDERED_PROBE_LOOP_C_ROWS)] =
    stub_code(&ORDERED_PROBE_LOOP_C_ROWS);

/// Replace every [`PROBE_LOOP_ROWS`] (either form) in `code` by its
/// ordered version; how many. Instructions are 2-byte aligned.
fn order_stack_probes(code: &mut [u8]) -> usize {
    let forms: [(&[u8], &[u8]); 2] = [
        (&PROBE_LOOP, &ORDERED_PROBE_LOOP),
        (&PROBE_LOOP_C, &ORDERED_PROBE_LOOP_C),
    ];
    let mut repaired = 0;
    let mut at = 0;
    while at < code.len() {
        let rest = &mut code[at..];
        match forms.iter().find(|(old, _)| rest.starts_with(old)) {
            Some((_, ordered)) => {
                rest[..ordered.len()].copy_from_slice(ordered);
                repaired += 1;
                at += ordered.len();
            }
            None => at += 2,
        }
    }
    repaired
}

impl IsaBehaviour for Riscv64 {
    /// Patches every kind Cranelift 0.135's riscv64 backend emits outside TLS:
    ///
    /// * `RiscvCallPlt` — `auipc rX, hi20; jalr rd, lo12(rX)` (direct calls
    ///   and `return_call`): both immediates of `S + A - P`.
    /// * `RiscvPCRelHi20` / `RiscvGotHi20` — the `auipc` of
    ///   `load_ext_name_near` / `load_ext_name_got` (`target` is the GOT slot
    ///   for the latter): the rounded high 20 bits of `S + A - P`.
    /// * `RiscvPCRelLo12I` — the `addi`/`ld` after such an `auipc`. Its target
    ///   is a label: `target + addend` is the `auipc`'s address, and the
    ///   immediate is the low 12 bits of (`value_at(auipc)` − auipc address),
    ///   consistent with the rounding of the high part. The `auipc` must be in
    ///   this function, must carry a relocation, and must write the register
    ///   the patched instruction reads.
    /// * `Abs8` — the 8-byte literal of `load_ext_name_far`; `Abs4` — a
    ///   32-bit word holding a value that fits 32 bits signed or unsigned.
    ///
    /// `RiscvTlsGdHi20` and every other kind are [`RelocError::Unsupported`].
    fn apply_relocation(&self, site: RelocSite<'_>) -> Result<(), RelocError> {
        let value = site.value();
        let (kind, code, offset, place) = (site.kind, site.code, site.offset, site.place);
        let value_at = site.value_at;
        let pcrel = value.wrapping_sub(place) as i64;
        match kind {
            Reloc::RiscvCallPlt => {
                let auipc = read_auipc(code, offset)?;
                let jalr = read_insn(code, offset + 4)?;
                if jalr & OPCODE_MASK != OP_JALR || funct3(jalr) != 0 || rs1(jalr) != rd(auipc) {
                    return Err(RelocError::UnexpectedInstruction);
                }
                // jalr clears bit 0 of the target: an odd one cannot be reached.
                if pcrel & 1 != 0 {
                    return Err(RelocError::Misaligned { value: pcrel });
                }
                let (hi20, lo12) = split_hi20_lo12(pcrel)?;
                write_le32(code, offset, with_hi20(auipc, hi20));
                write_le32(code, offset + 4, with_lo12(jalr, lo12));
                Ok(())
            }
            Reloc::RiscvPCRelHi20 | Reloc::RiscvGotHi20 => {
                let auipc = read_auipc(code, offset)?;
                let (hi20, _) = split_hi20_lo12(pcrel)?;
                write_le32(code, offset, with_hi20(auipc, hi20));
                Ok(())
            }
            Reloc::RiscvPCRelLo12I => {
                let insn = read_insn(code, offset)?;
                if !I_TYPE_OPCODES.contains(&(insn & OPCODE_MASK)) {
                    return Err(RelocError::UnexpectedInstruction);
                }
                // The label names the paired auipc, inside this function.
                let auipc_address = value;
                let base = place.wrapping_sub(offset as u64);
                let auipc_offset = usize::try_from(auipc_address.wrapping_sub(base))
                    .map_err(|_| RelocError::UnexpectedInstruction)?;
                let auipc = read_auipc(code, auipc_offset)?;
                if rd(auipc) != rs1(insn) {
                    return Err(RelocError::UnexpectedInstruction);
                }
                let hi_value = value_at(auipc_address).ok_or(RelocError::UnexpectedInstruction)?;
                let (_, lo12) = split_hi20_lo12(hi_value.wrapping_sub(auipc_address) as i64)?;
                write_le32(code, offset, with_lo12(insn, lo12));
                Ok(())
            }
            _ => Err(RelocError::Unsupported),
        }
    }

    /// s0 points at the (caller s0, ra) pair and the clobber area lies
    /// directly below it (see the module documentation), so the shared
    /// [`fp_relative_saved_registers`] decoding is right for riscv64.
    ///
    /// One riscv64-only wrinkle: a `preserve_all` function (with the V
    /// extension) also saves the vector registers it clobbers, as
    /// `RegClass::Vector` `SaveReg`s, which the shared decoding rejects.
    /// Those saves are dropped here: no vector register is callee-saved in
    /// any other riscv64 convention (Cranelift's `DEFAULT_CLOBBERS` holds all
    /// of v0–v31), so no frame that catches an exception relies on one, and
    /// the context has no vector registers to restore them into.
    /// The stack-probe loop, probed from the stack pointer down (see
    /// [`PROBE_LOOP_ROWS`]).
    fn repair_code(&self, code: &mut [u8]) -> usize {
        order_stack_probes(code)
    }

    fn saved_registers(&self, unwind: &[(u32, UnwindInst)]) -> Result<Vec<SavedRegister>, String> {
        let scalar: Vec<(u32, UnwindInst)> = unwind
            .iter()
            .filter(|(_, inst)| {
                !matches!(inst, UnwindInst::SaveReg { reg, .. }
                    if reg.class() == cranelift_codegen::RegClass::Vector)
            })
            .cloned()
            .collect();
        fp_relative_saved_registers(&scalar)
    }
}

#[cfg(test)]
mod tests;
