//! riscv64 (Linux, RV64GC, LP64D): frame layout, registers, relocations and
//! stubs.
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
//!   The shared [`fp_relative_saved_registers`] decoding (`clobber_offset -
//!   offset_downward_to_clobbers`) therefore gives the right fp offset. (When
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
    SavedRegister, Stub, fp_relative_saved_registers, read_le32, write_le32,
};

/// The code of riscv64.
pub struct Riscv64;

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

// Both stubs were assembled from the listings below with
// `riscv64-linux-gnu-as -march=rv64gc -mno-relax` under `.option norvc` (no
// compressed instructions, so they run on any RV64GC hart whatever Cranelift's
// `has_c` setting) and extracted with `objcopy -O binary`.
//
// Context layout (words of 8 bytes, see `super::context`): 0 PC, 1 SP, 2 FP,
// 3–4 payloads, 5–10 the six arguments, 11–21 s1, s2–s11, 22–33 fs0, fs1,
// fs2–fs11. That is 34 words = 272 (0x110) bytes, already a multiple of 16.
// Each line of the byte arrays is one instruction, in listing order.

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
static THROW_CODE: [u8; 156] = [
    0x13, 0x01, 0x01, 0xef, //
    0x23, 0x30, 0x11, 0x00, //
    0x93, 0x02, 0x01, 0x11, //
    0x23, 0x34, 0x51, 0x00, //
    0x23, 0x38, 0x81, 0x00, //
    0x23, 0x34, 0xa1, 0x02, //
    0x23, 0x38, 0xb1, 0x02, //
    0x23, 0x3c, 0xc1, 0x02, //
    0x23, 0x30, 0xd1, 0x04, //
    0x23, 0x34, 0xe1, 0x04, //
    0x23, 0x38, 0xf1, 0x04, //
    0x23, 0x3c, 0x91, 0x04, //
    0x23, 0x30, 0x21, 0x07, //
    0x23, 0x34, 0x31, 0x07, //
    0x23, 0x38, 0x41, 0x07, //
    0x23, 0x3c, 0x51, 0x07, //
    0x23, 0x30, 0x61, 0x09, //
    0x23, 0x34, 0x71, 0x09, //
    0x23, 0x38, 0x81, 0x09, //
    0x23, 0x3c, 0x91, 0x09, //
    0x23, 0x30, 0xa1, 0x0b, //
    0x23, 0x34, 0xb1, 0x0b, //
    0x27, 0x38, 0x81, 0x0a, //
    0x27, 0x3c, 0x91, 0x0a, //
    0x27, 0x30, 0x21, 0x0d, //
    0x27, 0x34, 0x31, 0x0d, //
    0x27, 0x38, 0x41, 0x0d, //
    0x27, 0x3c, 0x51, 0x0d, //
    0x27, 0x30, 0x61, 0x0f, //
    0x27, 0x34, 0x71, 0x0f, //
    0x27, 0x38, 0x81, 0x0f, //
    0x27, 0x3c, 0x91, 0x0f, //
    0x27, 0x30, 0xa1, 0x11, //
    0x27, 0x34, 0xb1, 0x11, //
    0x17, 0x03, 0x00, 0x00, //
    0x03, 0x33, 0x03, 0xf7, //
    0x13, 0x05, 0x01, 0x00, //
    0xe7, 0x00, 0x03, 0x00, //
    0x13, 0x05, 0x01, 0x00, //
];

/// Capstone listing of [`THROW_CODE`], line for line with its bytes.
const THROW_LISTING: &str = "\
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
auipc t1, 0
ld t1, -0x90(t1)
mv a0, sp
jalr t1
mv a0, sp";

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
static RESUME_CODE: [u8; 124] = [
    0x83, 0x34, 0x85, 0x05, //
    0x03, 0x39, 0x05, 0x06, //
    0x83, 0x39, 0x85, 0x06, //
    0x03, 0x3a, 0x05, 0x07, //
    0x83, 0x3a, 0x85, 0x07, //
    0x03, 0x3b, 0x05, 0x08, //
    0x83, 0x3b, 0x85, 0x08, //
    0x03, 0x3c, 0x05, 0x09, //
    0x83, 0x3c, 0x85, 0x09, //
    0x03, 0x3d, 0x05, 0x0a, //
    0x83, 0x3d, 0x85, 0x0a, //
    0x07, 0x34, 0x05, 0x0b, //
    0x87, 0x34, 0x85, 0x0b, //
    0x07, 0x39, 0x05, 0x0c, //
    0x87, 0x39, 0x85, 0x0c, //
    0x07, 0x3a, 0x05, 0x0d, //
    0x87, 0x3a, 0x85, 0x0d, //
    0x07, 0x3b, 0x05, 0x0e, //
    0x87, 0x3b, 0x85, 0x0e, //
    0x07, 0x3c, 0x05, 0x0f, //
    0x87, 0x3c, 0x85, 0x0f, //
    0x07, 0x3d, 0x05, 0x10, //
    0x87, 0x3d, 0x85, 0x10, //
    0x83, 0x35, 0x05, 0x02, //
    0x03, 0x33, 0x05, 0x00, //
    0x83, 0x33, 0x05, 0x01, //
    0x03, 0x3e, 0x85, 0x00, //
    0x03, 0x35, 0x85, 0x01, //
    0x13, 0x84, 0x03, 0x00, //
    0x13, 0x01, 0x0e, 0x00, //
    0x67, 0x00, 0x03, 0x00, //
];

/// Capstone listing of [`RESUME_CODE`], line for line with its bytes.
const RESUME_LISTING: &str = "\
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
jr t1";

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
        listing: THROW_LISTING,
    },
    resume_stub: Stub {
        code: &RESUME_CODE,
        listing: RESUME_LISTING,
    },
    return_stack_depth: 0,
    behaviour: &Riscv64,
};

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
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
    use cranelift_codegen::settings::{self, Configurable};

    use super::*;
    use crate::compile::{CompiledFunction, RelocTarget, build_isa, compile_function};
    use crate::isa::RegClass;
    use crate::isa::{context, disassemble};

    // ---- instruction encoders and decoders (independent of the code above) ----

    const T0: u32 = 5;
    const RA_N: u32 = 1;
    const A0_N: u32 = 10;
    const A1_N: u32 = 11;

    fn auipc(rd: u32, imm20: u32) -> u32 {
        (imm20 << 12) | (rd << 7) | 0x17
    }
    fn i_type(opcode: u32, funct3: u32, rd: u32, rs1: u32, imm: i32) -> u32 {
        (((imm as u32) & 0xfff) << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | opcode
    }
    fn jalr(rd: u32, rs1: u32) -> u32 {
        i_type(0x67, 0, rd, rs1, 0)
    }
    fn addi(rd: u32, rs1: u32) -> u32 {
        i_type(0x13, 0, rd, rs1, 0)
    }
    fn ld(rd: u32, rs1: u32) -> u32 {
        i_type(0x03, 3, rd, rs1, 0)
    }
    /// The value `auipc` adds to the pc (sign-extended on RV64).
    fn u_imm(insn: u32) -> i64 {
        i64::from((insn & 0xffff_f000) as i32)
    }
    fn i_imm(insn: u32) -> i64 {
        i64::from((insn as i32) >> 20)
    }
    fn word(code: &[u8], offset: usize) -> u32 {
        u32::from_le_bytes(code[offset..offset + 4].try_into().unwrap())
    }
    fn words(insns: &[u32]) -> Vec<u8> {
        insns.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn no_values(_: u64) -> Option<u64> {
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        kind: Reloc,
        code: &mut [u8],
        offset: usize,
        place: u64,
        target: u64,
        addend: i64,
        value_at: &dyn Fn(u64) -> Option<u64>,
    ) -> Result<(), RelocError> {
        SPEC.apply_relocation(RelocSite {
            kind,
            code,
            offset,
            place,
            target,
            addend,
            value_at,
        })
    }

    /// Displacements around every interesting edge of the hi20/lo12 split.
    const DISPLACEMENTS: [i64; 20] = [
        0,
        4,
        -4,
        0x7fe,
        0x7ff,
        0x800,
        0x801,
        0xffe,
        0xfff,
        0x1000,
        -0x7ff,
        -0x800,
        -0x801,
        -0x1000,
        0x1234_5ffe,
        -0x1234_5802,
        (1 << 31) - 0x802,
        (1 << 31) - 0x801,
        -(1 << 31),
        -(1 << 31) - 0x800,
    ];

    const BASE: u64 = 0x0000_7f00_8000_0000;

    #[test]
    fn split_rounds_and_sign_extends() {
        assert_eq!(split_hi20_lo12(0x7ff), Ok((0, 0x7ff)));
        assert_eq!(split_hi20_lo12(0x800), Ok((1, -0x800)));
        assert_eq!(split_hi20_lo12(0xfff), Ok((1, -1)));
        assert_eq!(split_hi20_lo12(0x1000), Ok((1, 0)));
        assert_eq!(split_hi20_lo12(-0x800), Ok((0, -0x800)));
        assert_eq!(split_hi20_lo12(-0x801), Ok((-1, 0x7ff)));
        assert_eq!(
            split_hi20_lo12((1 << 31) - 0x801),
            Ok(((1 << 19) - 1, 0x7ff))
        );
        assert_eq!(
            split_hi20_lo12(-(1 << 31) - 0x800),
            Ok((-(1 << 19), -0x800))
        );
        for value in [(1 << 31) - 0x800, -(1 << 31) - 0x801, i64::MAX, i64::MIN] {
            assert_eq!(
                split_hi20_lo12(value),
                Err(RelocError::OutOfRange { value })
            );
        }
    }

    #[test]
    fn call_plt_patches_the_auipc_jalr_pair() {
        // jalr targets are even: odd displacements are `Misaligned` (below).
        for (i, &d) in DISPLACEMENTS
            .iter()
            .enumerate()
            .filter(|(_, d)| *d & 1 == 0)
        {
            for (link, tmp) in [(RA_N, RA_N), (0, T0 + 1)] {
                let mut code = words(&[addi(0, 0), auipc(tmp, 0), jalr(link, tmp)]);
                let place = BASE + 0x100 * i as u64 + 4;
                // Split the value between target and addend to check both count.
                let target = place.wrapping_add_signed(d - 2);
                apply(
                    Reloc::RiscvCallPlt,
                    &mut code,
                    4,
                    place,
                    target,
                    2,
                    &no_values,
                )
                .unwrap();
                let (a, j) = (word(&code, 4), word(&code, 8));
                assert_eq!(a & 0xfff, auipc(tmp, 0), "auipc rd/opcode kept");
                assert_eq!(j & 0xfffff, jalr(link, tmp), "jalr rd/rs1/opcode kept");
                assert_eq!(u_imm(a) + i_imm(j), d, "displacement {d:#x}");
                assert_eq!(word(&code, 0), addi(0, 0), "neighbour untouched");
            }
        }
    }

    #[test]
    fn call_plt_is_checked_against_capstone() {
        let mut code = words(&[auipc(RA_N, 0), jalr(RA_N, RA_N)]);
        let place = BASE;
        apply(
            Reloc::RiscvCallPlt,
            &mut code,
            0,
            place,
            place + 0x1234_5ffe,
            0,
            &no_values,
        )
        .unwrap();
        assert_eq!(
            disassemble(Arch::Riscv64, &code).unwrap(),
            "auipc ra, 0x12346\njalr ra, ra, -2"
        );
        let mut code = words(&[auipc(RA_N, 0), jalr(RA_N, RA_N)]);
        apply(
            Reloc::RiscvCallPlt,
            &mut code,
            0,
            place,
            place - 0x801,
            0,
            &no_values,
        )
        .unwrap_err();
        let mut code = words(&[auipc(RA_N, 0), jalr(RA_N, RA_N)]);
        apply(
            Reloc::RiscvCallPlt,
            &mut code,
            0,
            place,
            place - 0x802,
            0,
            &no_values,
        )
        .unwrap();
        assert_eq!(
            disassemble(Arch::Riscv64, &code).unwrap(),
            "auipc ra, 0xfffff\njalr ra, ra, 0x7fe"
        );
    }

    #[test]
    fn call_plt_errors() {
        let fresh = || words(&[auipc(RA_N, 0), jalr(RA_N, RA_N)]);
        let place = BASE;
        for d in [(1i64 << 31) - 0x800, -(1 << 31) - 0x802, 1 << 40] {
            let mut code = fresh();
            let r = apply(
                Reloc::RiscvCallPlt,
                &mut code,
                0,
                place,
                place.wrapping_add_signed(d),
                0,
                &no_values,
            );
            assert_eq!(r, Err(RelocError::OutOfRange { value: d }));
            assert_eq!(code, fresh(), "nothing written on error");
        }
        let mut code = fresh();
        let r = apply(
            Reloc::RiscvCallPlt,
            &mut code,
            0,
            place,
            place + 0x101,
            0,
            &no_values,
        );
        assert_eq!(r, Err(RelocError::Misaligned { value: 0x101 }));
        // Not an auipc; a jalr through another register; not a jalr; a
        // compressed pair; a truncated site.
        for bad in [
            words(&[addi(RA_N, RA_N), jalr(RA_N, RA_N)]),
            words(&[auipc(RA_N, 0), jalr(RA_N, T0)]),
            words(&[auipc(RA_N, 0), addi(RA_N, RA_N)]),
            vec![0x01, 0x00, 0x01, 0x00, 0x82, 0x80, 0x01, 0x00],
            words(&[auipc(RA_N, 0)]),
        ] {
            let mut code = bad.clone();
            let r = apply(
                Reloc::RiscvCallPlt,
                &mut code,
                0,
                place,
                place + 0x100,
                0,
                &no_values,
            );
            assert_eq!(r, Err(RelocError::UnexpectedInstruction), "{bad:x?}");
            assert_eq!(code, bad);
        }
    }

    /// `auipc rd; <lo12 insn> rd, rd` at offset 8 of a 24-byte function,
    /// relocated as a hi20 of `kind` and a label-targeted `%pcrel_lo12`.
    fn patch_pair(
        hi_kind: Reloc,
        lo_insn: u32,
        target: u64,
        addend: i64,
        base: u64,
    ) -> Result<Vec<u8>, RelocError> {
        let mut code = words(&[addi(0, 0), addi(0, 0), auipc(A0_N, 0), lo_insn, addi(0, 0)]);
        let auipc_at = base + 8;
        let hi_value = target.wrapping_add_signed(addend);
        let value_at = move |a: u64| (a == auipc_at).then_some(hi_value);
        // Lo first: it must not depend on the auipc having been patched.
        apply(
            Reloc::RiscvPCRelLo12I,
            &mut code,
            12,
            base + 12,
            auipc_at,
            0,
            &value_at,
        )?;
        apply(hi_kind, &mut code, 8, auipc_at, target, addend, &value_at)?;
        Ok(code)
    }

    #[test]
    fn pcrel_hi20_lo12_pairs() {
        for hi_kind in [Reloc::RiscvPCRelHi20, Reloc::RiscvGotHi20] {
            let lo_insn = if hi_kind == Reloc::RiscvGotHi20 {
                ld(A0_N, A0_N)
            } else {
                addi(A0_N, A0_N)
            };
            for (i, &d) in DISPLACEMENTS.iter().enumerate() {
                let base = BASE + 0x40 * i as u64;
                let auipc_at = base + 8;
                let addend = if hi_kind == Reloc::RiscvGotHi20 {
                    0
                } else {
                    -24
                };
                let target = auipc_at.wrapping_add_signed(d - addend);
                let code = patch_pair(hi_kind, lo_insn, target, addend, base).unwrap();
                let (a, l) = (word(&code, 8), word(&code, 12));
                assert_eq!(a & 0xfff, auipc(A0_N, 0));
                assert_eq!(l & 0xfffff, lo_insn & 0xfffff);
                assert_eq!(u_imm(a) + i_imm(l), d, "{hi_kind:?} {d:#x}");
                if (d & 0xfff) >= 0x800 {
                    assert!(i_imm(l) < 0, "lo12 of {d:#x} is negative");
                }
            }
        }
    }

    #[test]
    fn pcrel_hi20_errors() {
        for kind in [Reloc::RiscvPCRelHi20, Reloc::RiscvGotHi20] {
            let mut code = words(&[auipc(A0_N, 0)]);
            let d = (1i64 << 31) - 0x800;
            let r = apply(kind, &mut code, 0, BASE, BASE + d as u64, 0, &no_values);
            assert_eq!(r, Err(RelocError::OutOfRange { value: d }));
            let mut code = words(&[addi(A0_N, A0_N)]);
            let r = apply(kind, &mut code, 0, BASE, BASE + 0x10, 0, &no_values);
            assert_eq!(r, Err(RelocError::UnexpectedInstruction));
        }
    }

    #[test]
    fn pcrel_lo12_errors() {
        let auipc_at = BASE + 8;
        let ok = move |a: u64| (a == auipc_at).then_some(BASE + 0x1000);
        let run = |insns: &[u32], label: u64, value_at: &dyn Fn(u64) -> Option<u64>| {
            let mut code = words(insns);
            apply(
                Reloc::RiscvPCRelLo12I,
                &mut code,
                12,
                BASE + 12,
                label,
                0,
                value_at,
            )
        };
        let nop = addi(0, 0);
        let good = [nop, nop, auipc(A0_N, 0), addi(A0_N, A0_N)];
        assert_eq!(run(&good, auipc_at, &ok), Ok(()));
        // The hi20 relocation is missing.
        assert_eq!(
            run(&good, auipc_at, &no_values),
            Err(RelocError::UnexpectedInstruction)
        );
        // The label is not an auipc / outside the function.
        assert_eq!(
            run(&good, BASE + 4, &|_| Some(BASE)),
            Err(RelocError::UnexpectedInstruction)
        );
        assert_eq!(
            run(&good, BASE - 4, &|_| Some(BASE)),
            Err(RelocError::UnexpectedInstruction)
        );
        assert_eq!(
            run(&good, BASE + 16, &|_| Some(BASE)),
            Err(RelocError::UnexpectedInstruction)
        );
        // The lo12 instruction reads another register than the auipc writes.
        let other = [nop, nop, auipc(A0_N, 0), addi(A0_N, A1_N)];
        assert_eq!(
            run(&other, auipc_at, &ok),
            Err(RelocError::UnexpectedInstruction)
        );
        // Not an I-type instruction (sd a0, 0(a0)).
        let store = [nop, nop, auipc(A0_N, 0), 0x00a5_3023];
        assert_eq!(
            run(&store, auipc_at, &ok),
            Err(RelocError::UnexpectedInstruction)
        );
        // The paired value is out of reach.
        let far = move |a: u64| (a == auipc_at).then_some(auipc_at + (1 << 31));
        assert_eq!(
            run(&good, auipc_at, &far),
            Err(RelocError::OutOfRange { value: 1 << 31 })
        );
    }

    #[test]
    fn absolute_relocations() {
        let mut code = vec![0xaa; 12];
        apply(
            Reloc::Abs8,
            &mut code,
            2,
            BASE + 2,
            0x1122_3344_5566_7788,
            -8,
            &no_values,
        )
        .unwrap();
        assert_eq!(&code[2..10], &0x1122_3344_5566_7780u64.to_le_bytes());
        assert_eq!((code[1], code[10]), (0xaa, 0xaa));
        let r = apply(Reloc::Abs8, &mut code, 6, BASE, 1, 0, &no_values);
        assert_eq!(r, Err(RelocError::OutOfRange { value: 1 }));

        for (target, addend, field) in [
            (0xffff_fff0u64, 0xfi64, 0xffff_ffffu32),
            (0x10, -0x20, 0xffff_fff0),
            (0x7fff_ffff, 0, 0x7fff_ffff),
        ] {
            let mut code = vec![0xaa; 8];
            apply(Reloc::Abs4, &mut code, 4, BASE, target, addend, &no_values).unwrap();
            assert_eq!(&code[4..8], &field.to_le_bytes());
            assert_eq!(&code[..4], &[0xaa; 4]);
        }
        for (target, addend) in [(0x1_0000_0000u64, 0i64), (0, -(1 << 31) - 1)] {
            let mut code = vec![0; 4];
            let value = target.wrapping_add_signed(addend) as i64;
            let r = apply(Reloc::Abs4, &mut code, 0, BASE, target, addend, &no_values);
            assert_eq!(r, Err(RelocError::OutOfRange { value }));
        }
    }

    #[test]
    fn other_kinds_are_unsupported() {
        let mut code = words(&[auipc(A0_N, 0), addi(A0_N, A0_N)]);
        for kind in [
            Reloc::RiscvTlsGdHi20,
            Reloc::X86PCRel4,
            Reloc::Arm64Call,
            Reloc::S390xTlsGd64,
        ] {
            let r = apply(kind, &mut code, 0, BASE, BASE, 0, &no_values);
            assert_eq!(r, Err(RelocError::Unsupported), "{kind:?}");
        }
        assert!(SPEC.uses_got(Reloc::RiscvGotHi20));
        for kind in [
            Reloc::RiscvPCRelHi20,
            Reloc::RiscvPCRelLo12I,
            Reloc::RiscvCallPlt,
            Reloc::Abs8,
            Reloc::Abs4,
        ] {
            assert!(!SPEC.uses_got(kind), "{kind:?}");
        }
    }

    #[test]
    fn registers() {
        let spec = &SPEC;
        let names = |regs: &[Reg]| {
            regs.iter()
                .map(|r| spec.register_name(*r))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(spec.callee_saved()).join(" "),
            "s1 s2 s3 s4 s5 s6 s7 s8 s9 s10 s11 \
             fs0 fs1 fs2 fs3 fs4 fs5 fs6 fs7 fs8 fs9 fs10 fs11"
        );
        assert_eq!(
            names(spec.int_arg_regs()).join(" "),
            "a0 a1 a2 a3 a4 a5 a6 a7"
        );
        assert_eq!(names(&spec.payload_regs()), ["a0", "a1"]);
        assert_eq!(spec.register_name(spec.stack_pointer()), "sp");
        assert_eq!(spec.register_name(spec.frame_pointer().unwrap()), "s0");
        assert_eq!(spec.register_name(spec.link_register().unwrap()), "ra");
        assert_eq!(spec.register_name(Reg::int(0)), "zero");
        assert_eq!(spec.register_name(Reg::float(31)), "ft11");
        assert_eq!(spec.register_name(Reg::int(40)), "x40");
        assert!(!spec.callee_saved().contains(&S0));
        assert!(!spec.callee_saved().contains(&SP));
        assert_eq!(context::size_bytes(spec.callee_saved().len()), 0x110);
    }

    /// The stubs use the context layout of `super::context`: every offset in
    /// the listings is derived here rather than trusted.
    #[test]
    fn stubs_follow_the_context_layout() {
        let spec = &SPEC;
        let size = context::size_bytes(spec.callee_saved().len());
        // Capstone prints immediates below 10 in decimal.
        let off = |word: usize| match word * 8 {
            small @ 0..10 => small.to_string(),
            large => format!("{large:#x}"),
        };
        let mut throw = vec![
            format!("addi sp, sp, -{size:#x}"),
            format!("sd ra, {}(sp)", off(context::PC)),
            format!("addi t0, sp, {size:#x}"),
            format!("sd t0, {}(sp)", off(context::SP)),
            format!("sd s0, {}(sp)", off(context::FP)),
        ];
        for (i, reg) in spec.int_arg_regs()[..context::ARG_COUNT].iter().enumerate() {
            throw.push(format!(
                "sd {}, {}(sp)",
                spec.register_name(*reg),
                off(context::ARGS + i)
            ));
        }
        let mut resume = Vec::new();
        for (i, reg) in spec.callee_saved().iter().enumerate() {
            let (st, ldi) = match reg.class {
                RegClass::Int => ("sd", "ld"),
                RegClass::Float => ("fsd", "fld"),
            };
            let name = spec.register_name(*reg);
            throw.push(format!("{st} {name}, {}(sp)", off(context::SAVED + i)));
            resume.push(format!("{ldi} {name}, {}(a0)", off(context::SAVED + i)));
        }
        let auipc_at = throw.len() * 4;
        throw.push("auipc t1, 0".into());
        throw.push(format!("ld t1, -{:#x}(t1)", auipc_at + 8));
        throw.extend(["mv a0, sp", "jalr t1", "mv a0, sp"].map(String::from));
        resume.push(format!("ld a1, {}(a0)", off(context::PAYLOAD1)));
        resume.push(format!("ld t1, {}(a0)", off(context::PC)));
        resume.push(format!("ld t2, {}(a0)", off(context::FP)));
        resume.push(format!("ld t3, {}(a0)", off(context::SP)));
        resume.push(format!("ld a0, {}(a0)", off(context::PAYLOAD0)));
        resume.extend(["mv s0, t2", "mv sp, t3", "jr t1"].map(String::from));
        assert_eq!(THROW_LISTING, throw.join("\n"));
        assert_eq!(RESUME_LISTING, resume.join("\n"));
        assert_eq!(
            disassemble(Arch::Riscv64, &THROW_CODE).unwrap(),
            THROW_LISTING
        );
        assert_eq!(
            disassemble(Arch::Riscv64, &RESUME_CODE).unwrap(),
            RESUME_LISTING
        );
        // Uncompressed only: every instruction is a 32-bit word.
        for code in [&THROW_CODE[..], &RESUME_CODE[..]] {
            assert!(code.chunks(4).all(|w| w.len() == 4 && w[0] & 3 == 3));
        }
    }

    // ---- real Cranelift output ----

    fn isa(is_pic: bool, has_c: bool) -> OwnedTargetIsa {
        isa_with(is_pic, has_c, &[])
    }

    fn isa_with_isa_flags(enable: &[&str]) -> OwnedTargetIsa {
        let shared = settings::Flags::new(settings::builder());
        let mut isa_builder = cranelift_codegen::isa::lookup(Arch::Riscv64.triple()).unwrap();
        for flag in enable {
            isa_builder.enable(flag).unwrap();
        }
        let flags = isa_builder.finish(shared.clone()).unwrap().isa_flags();
        build_isa(Arch::Riscv64, &shared, &flags).unwrap()
    }

    fn isa_with(is_pic: bool, has_c: bool, extra: &[(&str, &str)]) -> OwnedTargetIsa {
        let mut shared = settings::builder();
        shared
            .set("is_pic", if is_pic { "true" } else { "false" })
            .unwrap();
        for (name, value) in extra {
            shared.set(name, value).unwrap();
        }
        let shared = settings::Flags::new(shared);
        let mut isa_builder = cranelift_codegen::isa::lookup(Arch::Riscv64.triple()).unwrap();
        if has_c {
            isa_builder.enable("has_c").unwrap();
        }
        let flags = isa_builder.finish(shared.clone()).unwrap().isa_flags();
        build_isa(Arch::Riscv64, &shared, &flags).unwrap()
    }

    fn compile(isa: &dyn TargetIsa, clif: &str) -> Vec<CompiledFunction> {
        cranelift_reader::parse_functions(clif)
            .unwrap()
            .into_iter()
            .map(|f| compile_function(isa, f).unwrap())
            .collect()
    }

    const RELOC_CLIF: &str = "
function %relocs(i64) -> i64 system_v {
    sig0 = (i64) -> i64 tail
    fn0 = colocated %near_fn(i64) -> i64 system_v
    fn1 = %far_fn(i64) -> i64 system_v
    fn2 = colocated %near_tail(i64) -> i64 tail
    fn3 = %far_tail(i64) -> i64 tail
    gv0 = symbol colocated %near_data
    gv1 = symbol %far_data
    gv2 = symbol colocated %near_data+4660
    gv3 = symbol %far_data-8
block0(v0: i64):
    v1 = call fn0(v0)
    v2 = call fn1(v1)
    v3 = func_addr.i64 fn0
    v4 = func_addr.i64 fn1
    v5 = symbol_value.i64 gv0
    v6 = symbol_value.i64 gv1
    v7 = symbol_value.i64 gv2
    v8 = symbol_value.i64 gv3
    v9 = iadd v2, v3
    v10 = iadd v9, v4
    v11 = iadd v10, v5
    v12 = iadd v11, v6
    v13 = iadd v12, v7
    v14 = iadd v13, v8
    try_call fn2(v14), sig0, block1(ret0), [ default: block3(exn0) ]
block1(v15: i64):
    try_call fn3(v15), sig0, block2(ret0), [ default: block3(exn0) ]
block2(v16: i64):
    return v16
block3(v17: i64):
    return v17
}

function %tails(i64) -> i64 tail {
    fn0 = colocated %near_tail(i64) -> i64 tail
    fn1 = %far_tail(i64) -> i64 tail
block0(v0: i64):
    brif v0, block1, block2
block1:
    return_call fn0(v0)
block2:
    return_call fn1(v0)
}
";

    /// A toy linker: each function at `base`, symbols and GOT slots at fixed
    /// addresses chosen so hi20/lo12 splits need rounding and negative lo12.
    struct Layout {
        symbols: HashMap<String, u64>,
        got: HashMap<String, u64>,
    }

    impl Layout {
        fn new(base: u64) -> Layout {
            let names = [
                "%near_fn",
                "%far_fn",
                "%near_tail",
                "%far_tail",
                "%near_data",
                "%far_data",
            ];
            let offsets: [i64; 6] = [
                0x1234_5ffe,
                -0x2345_6802,
                0x800,
                -0x7fe,
                0x7fff_0ff8,
                -0x8000_0000,
            ];
            let symbols = names
                .iter()
                .zip(offsets)
                .map(|(n, o)| (n.to_string(), base.wrapping_add_signed(o)))
                .collect();
            let got = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), base + 0x10_0ff8 + 8 * i as u64))
                .collect();
            Layout { symbols, got }
        }

        /// `target` for a relocation, as a linker passes it.
        fn target(&self, base: u64, kind: Reloc, target: &RelocTarget) -> u64 {
            match target {
                RelocTarget::Symbol(name) if SPEC.uses_got(kind) => self.got[name],
                RelocTarget::Symbol(name) => self.symbols[name],
                RelocTarget::Label(offset) => base + u64::from(*offset),
            }
        }

        /// Apply every relocation of `func` at `base`; returns the patched
        /// code or the first error.
        fn link(&self, func: &CompiledFunction, base: u64) -> Result<Vec<u8>, RelocError> {
            let values: HashMap<u64, u64> = func
                .relocs
                .iter()
                .map(|r| {
                    let target = self.target(base, r.kind, &r.target);
                    (
                        base + u64::from(r.offset),
                        target.wrapping_add_signed(r.addend),
                    )
                })
                .collect();
            let value_at = |a: u64| values.get(&a).copied();
            let mut code = func.code.clone();
            for r in &func.relocs {
                apply(
                    r.kind,
                    &mut code,
                    r.offset as usize,
                    base + u64::from(r.offset),
                    self.target(base, r.kind, &r.target),
                    r.addend,
                    &value_at,
                )?;
            }
            Ok(code)
        }
    }

    /// Links `RELOC_CLIF` and checks, by decoding the patched instructions,
    /// that every relocation computes its intended address. Returns the kinds
    /// seen.
    fn link_and_check(is_pic: bool, has_c: bool) -> BTreeSet<String> {
        let isa = isa(is_pic, has_c);
        let mut kinds = BTreeSet::new();
        let mut compressed = false;
        for (n, func) in compile(&*isa, RELOC_CLIF).iter().enumerate() {
            let base = BASE + 0x1_0000 * n as u64;
            let layout = Layout::new(base);
            let code = layout.link(func, base).unwrap_or_else(|e| {
                panic!(
                    "pic={is_pic} c={has_c} {}: {e}\n{:#?}",
                    func.name, func.relocs
                )
            });
            let cs = isa.to_capstone().unwrap();
            compressed |= cs
                .disasm_all(&code, 0)
                .unwrap()
                .iter()
                .any(|i| i.bytes().len() == 2);
            for r in &func.relocs {
                let off = r.offset as usize;
                let place = base + u64::from(r.offset);
                let expected = layout
                    .target(base, r.kind, &r.target)
                    .wrapping_add_signed(r.addend);
                kinds.insert(format!("{:?}", r.kind));
                match r.kind {
                    Reloc::RiscvCallPlt => {
                        let got = place.wrapping_add_signed(
                            u_imm(word(&code, off)) + i_imm(word(&code, off + 4)),
                        );
                        assert_eq!(got, expected, "{r:?}");
                    }
                    Reloc::RiscvPCRelHi20 | Reloc::RiscvGotHi20 => {
                        let lo = func
                            .relocs
                            .iter()
                            .find(|l| {
                                l.kind == Reloc::RiscvPCRelLo12I
                                    && l.target == RelocTarget::Label(r.offset)
                            })
                            .expect("hi20 has a lo12 partner");
                        let lo_insn = word(&code, lo.offset as usize);
                        let want_op = if r.kind == Reloc::RiscvGotHi20 {
                            ld(0, 0)
                        } else {
                            addi(0, 0)
                        };
                        assert_eq!(lo_insn & 0x707f, want_op, "{lo:?}");
                        let got =
                            place.wrapping_add_signed(u_imm(word(&code, off)) + i_imm(lo_insn));
                        assert_eq!(got, expected, "{r:?}");
                        if r.kind == Reloc::RiscvGotHi20 {
                            let RelocTarget::Symbol(name) = &r.target else {
                                panic!()
                            };
                            assert_eq!(got, layout.got[name]);
                        }
                    }
                    Reloc::RiscvPCRelLo12I => {
                        assert!(matches!(r.target, RelocTarget::Label(_)), "{r:?}");
                        assert_eq!(r.addend, 0);
                    }
                    Reloc::Abs8 => {
                        let got = u64::from_le_bytes(code[off..off + 8].try_into().unwrap());
                        assert_eq!(got, expected, "{r:?}");
                    }
                    other => panic!("unexpected kind {other:?}"),
                }
            }
        }
        assert_eq!(compressed, has_c, "has_c={has_c} emits compressed code");
        kinds
    }

    fn set(kinds: &[&str]) -> BTreeSet<String> {
        kinds.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn links_cranelift_relocations_non_pic() {
        for has_c in [false, true] {
            assert_eq!(
                link_and_check(false, has_c),
                set(&["Abs8", "RiscvCallPlt", "RiscvPCRelHi20", "RiscvPCRelLo12I"]),
                "has_c={has_c}"
            );
        }
    }

    #[test]
    fn links_cranelift_relocations_pic() {
        for has_c in [false, true] {
            assert_eq!(
                link_and_check(true, has_c),
                set(&["RiscvCallPlt", "RiscvGotHi20", "RiscvPCRelLo12I"]),
                "has_c={has_c}"
            );
        }
    }

    #[test]
    fn cranelift_call_out_of_range_is_an_error() {
        let isa = isa(false, false);
        let funcs = compile(&*isa, RELOC_CLIF);
        let base = BASE;
        let mut layout = Layout::new(base);
        layout.symbols.insert("%near_fn".into(), base + (1 << 32));
        let err = layout.link(&funcs[0], base).unwrap_err();
        assert!(matches!(err, RelocError::OutOfRange { .. }), "{err:?}");
    }

    #[test]
    fn cranelift_tls_is_unsupported() {
        let isa = isa_with(true, false, &[("tls_model", "elf_gd")]);
        let funcs = compile(
            &*isa,
            "function %tls() -> i64 system_v {
                gv0 = symbol colocated tls %t
            block0:
                v0 = tls_value.i64 gv0
                return v0
            }",
        );
        let kinds: Vec<_> = funcs[0].relocs.iter().map(|r| r.kind).collect();
        assert!(kinds.contains(&Reloc::RiscvTlsGdHi20), "{kinds:?}");
        let r = funcs[0]
            .relocs
            .iter()
            .find(|r| r.kind == Reloc::RiscvTlsGdHi20)
            .unwrap();
        let mut code = funcs[0].code.clone();
        let e = apply(
            r.kind,
            &mut code,
            r.offset as usize,
            BASE,
            BASE,
            0,
            &no_values,
        );
        assert_eq!(e, Err(RelocError::Unsupported));
    }

    const PRESSURE_CLIF: &str = "
function %pressure(i64, f64) -> i64, f64 system_v {
    fn0 = %ext(i64) -> i64 system_v
block0(v0: i64, v1: f64):
    v2 = imul v0, v0
    v3 = iadd v2, v0
    v4 = imul v3, v2
    v5 = bxor v4, v3
    v6 = iadd v5, v4
    v7 = imul v6, v5
    v8 = bxor v7, v6
    v9 = iadd v8, v7
    v10 = imul v9, v8
    v11 = bxor v10, v9
    v12 = iadd v11, v10
    v13 = imul v12, v11
    v20 = fadd v1, v1
    v21 = fmul v1, v1
    v22 = fsub v21, v1
    v23 = fdiv v21, v20
    v24 = fadd v23, v22
    v25 = fmul v24, v23
    v30 = call fn0(v0)
    v31 = iadd v30, v2
    v32 = iadd v31, v3
    v33 = iadd v32, v4
    v34 = iadd v33, v5
    v35 = iadd v34, v6
    v36 = iadd v35, v7
    v37 = iadd v36, v8
    v38 = iadd v37, v9
    v39 = iadd v38, v10
    v40 = iadd v39, v11
    v41 = iadd v40, v12
    v42 = iadd v41, v13
    v50 = fadd v20, v21
    v51 = fadd v50, v22
    v52 = fadd v51, v23
    v53 = fadd v52, v24
    v54 = fadd v53, v25
    return v42, v54
}
";

    /// The clobber stores of a Cranelift prologue, as fp-relative slots,
    /// decoded instruction by instruction: after the last `mv s0, sp` of the
    /// prologue comes `addi sp, sp, -N`, then one `sd`/`fsd` per register at
    /// `X(sp)`, i.e. at `s0 - N + X`.
    fn decode_clobber_stores(code: &[u8]) -> Vec<SavedRegister> {
        const MV_S0_SP: u32 = 0x0001_0413;
        let mut offset = (0..64)
            .step_by(4)
            .rfind(|&o| word(code, o) == MV_S0_SP)
            .expect("prologue sets s0")
            + 4;
        let adjust = word(code, offset);
        assert_eq!(adjust & 0xfffff, addi(2, 2), "sp adjustment: {adjust:#x}");
        let frame = -i_imm(adjust);
        offset += 4;
        let mut stored = Vec::new();
        loop {
            let insn = word(code, offset);
            let (opcode, funct3, base) = (insn & 0x7f, (insn >> 12) & 7, (insn >> 15) & 0x1f);
            let class = match (opcode, funct3, base) {
                (0x23, 3, 2) => RegClass::Int,
                (0x27, 3, 2) => RegClass::Float,
                _ => break,
            };
            let imm = i64::from((((insn >> 25) << 5) | ((insn >> 7) & 0x1f)) as i32) << 52 >> 52;
            let reg = Reg {
                class,
                hw: ((insn >> 20) & 0x1f) as u8,
            };
            stored.push(SavedRegister {
                reg,
                fp_offset: imm - frame,
            });
            offset += 4;
        }
        stored
    }

    /// Checks `frame_links` and `saved_registers` against the prologue
    /// Cranelift actually emits.
    #[test]
    fn prologue_matches_frame_links_and_saved_registers() {
        let isa = isa(false, false);
        let func = &compile(&*isa, PRESSURE_CLIF)[0];
        let listing = disassemble(Arch::Riscv64, &func.code[..16]).unwrap();
        assert_eq!(
            listing,
            "addi sp, sp, -0x10\nsd ra, 8(sp)\nsd s0, 0(sp)\nmv s0, sp"
        );
        let links = SPEC.frame_links();
        assert_eq!(
            (links.caller_fp_offset, links.return_address_offset),
            (0, 8)
        );
        let saved = func.saved_registers.clone();
        assert_eq!(saved, decode_clobber_stores(&func.code));
        let ints = saved
            .iter()
            .filter(|s| s.reg.class == RegClass::Int)
            .count();
        let floats = saved
            .iter()
            .filter(|s| s.reg.class == RegClass::Float)
            .count();
        assert!(ints >= 8 && floats >= 4, "{saved:?}");
        for s in &saved {
            assert!(SPEC.callee_saved().contains(&s.reg), "{s:?}");
            assert!(s.fp_offset < 0 && s.fp_offset % 8 == 0, "{s:?}");
        }
    }

    /// A `tail` function whose `return_call` needs more stack-argument space
    /// than it received grows its incoming-argument area in the prologue: it
    /// moves the (s0, ra) pair down and points s0 at it again before saving
    /// clobbers, so the frame links and the fp-relative slots still hold.
    #[test]
    fn grown_tail_frame_keeps_the_layout() {
        let isa = isa(false, false);
        let func = &compile(
            &*isa,
            "function %grow(i64) -> i64 tail {
                fn0 = %ext(i64) -> i64 tail
                fn1 = %many(i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64) -> i64 tail
            block0(v0: i64):
                v1 = imul v0, v0
                v2 = call fn0(v0)
                v3 = iadd v1, v2
                return_call fn1(v3, v0, v1, v2, v3, v0, v1, v2, v3, v0, v1, v2)
            }",
        )[0];
        let listing = disassemble(Arch::Riscv64, &func.code[..36]).unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(
            lines[..4],
            [
                "addi sp, sp, -0x10",
                "sd ra, 8(sp)",
                "sd s0, 0(sp)",
                "mv s0, sp"
            ]
        );
        // addi sp, sp, -D; sd ra, 8(sp); ld s0, D(sp); sd s0, 0(sp); mv s0, sp
        let grow = lines[4].strip_prefix("addi sp, sp, -").expect(&listing);
        assert_eq!(
            lines[5..9],
            [
                "sd ra, 8(sp)".to_string(),
                format!("ld s0, {grow}(sp)"),
                "sd s0, 0(sp)".to_string(),
                "mv s0, sp".to_string()
            ]
        );
        assert!(!func.saved_registers.is_empty());
        assert_eq!(func.saved_registers, decode_clobber_stores(&func.code));
    }

    /// `preserve_all` with vector code saves vector registers too; they are
    /// left out (see `saved_registers`) instead of failing the compile, and
    /// the scalar slots still match the prologue.
    #[test]
    fn preserve_all_vector_saves_are_skipped() {
        let isa = isa_with_isa_flags(&["has_v"]);
        let func = &compile(
            &*isa,
            "function %pa(i64, i64) preserve_all {
            block0(v0: i64, v1: i64):
                v2 = splat.i64x2 v0
                v3 = splat.i64x2 v1
                v4 = iadd v2, v3
                v5 = imul v4, v3
                store v5, v1
                return
            }",
        )[0];
        let saved = &func.saved_registers;
        assert!(!saved.is_empty());
        assert_eq!(*saved, decode_clobber_stores(&func.code));
        // The vector saves that were skipped: a `vse8.v vN, (sp)` (STORE-FP
        // major opcode, width field 0, base sp) follows the scalar stores.
        let vector_save = func.code.chunks(4).any(|w| {
            let insn = u32::from_le_bytes(w.try_into().unwrap());
            insn & 0x7f == 0x27 && (insn >> 12) & 7 == 0 && (insn >> 15) & 0x1f == 2
        });
        assert!(vector_save);
    }
}
