//! s390x (z/Architecture, Linux ELF ABI, big-endian): frame layout,
//! registers, relocations and stubs.
//!
//! # Frames
//!
//! s390x has no frame-pointer register. With `preserve_frame_pointers`,
//! Cranelift keeps the ABI's optional *back chain* instead: the prologue
//! (`gen_clobber_save` in Cranelift's `isa/s390x/abi.rs`) copies the incoming
//! stack pointer to `%r1`, allocates the frame and stores `%r1` at `0(%r15)`,
//! and `get_frame_pointer` lowers to a load of `0(%r15)`. So the
//! *frame-pointer value* of a frame, as this crate uses the word, is its back
//! chain value:
//!
//! ```text
//! fp = incoming %r15 (+ incoming stack-argument size for a `tail` callee)
//!    = the caller's %r15 while the caller's body runs
//!    = CFA - 160
//! ```
//!
//! (A `tail` callee's incoming arguments are allocated by the caller *below*
//! its own frame, so its entry `%r15` is lower than the caller's by the
//! argument area; the prologue adds that size back before storing the back
//! chain, and its epilogue pops it.)
//!
//! From there:
//!
//! * `STMG %rN, %r15, 8*N(fp)` saves the callee-saved GPRs in the 160-byte
//!   register save area the caller provides at `fp`: `%ri` at `fp + 8*i`, so
//!   the return address `%r14` is at `fp + 112` (Cranelift's
//!   `memarg_return_address_offset` is `InitialSPOffset + 112`, and
//!   `InitialSPOffset` resolves to exactly this `fp`, also for `tail`).
//! * `fp` is the caller's stack pointer, and the caller's back chain — the
//!   caller's own fp value — is stored at the caller's stack pointer: the
//!   caller's fp is `[fp + 0]`. Nothing overwrites it: callees store from
//!   `fp + 48` upward. A non-tail call to a `tail` callee with stack
//!   arguments writes a temporary copy of the back chain below, which does
//!   not matter here since `fp` already skips the argument area.
//! * A call site's `frame_offset` is Cranelift's `sp_to_fp()` =
//!   outgoing args + fixed frame + clobber area, which is exactly
//!   `fp - %r15` in the function body (for `tail` functions too: the
//!   prologue subtracts the incoming-argument size it adds to `fp`). That is
//!   the stack pointer to resume a handler with. (During a call to a `tail`
//!   callee with stack arguments the stack pointer is transiently lower by
//!   the argument area; the callee pops it before returning.)
//!
//! Float callee-saves (`%f8`–`%f15`) live in the clobber area just below
//! `fp`; see [`S390x::saved_registers`](IsaBehaviour::saved_registers).

use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::isa::unwind::UnwindInst;

use super::{
    Arch, FrameLinks, IsaBehaviour, IsaSpec, Reg, RegisterNames, RelocError, RelocSite,
    SavedRegister, Stub, StubRow, context, stub_code, stub_len,
};

/// The code of s390x.
pub struct S390x;

/// Holds the incoming stack pointer while the prologue stores the back
/// chain (`lgr %r1, %r15; aghi %r15, -N; stg %r1, 0(%r15)`).
const R1: Reg = Reg::int(1);
const R2: Reg = Reg::int(2);
const R3: Reg = Reg::int(3);
const R4: Reg = Reg::int(4);
const R5: Reg = Reg::int(5);
const R6: Reg = Reg::int(6);
const R7: Reg = Reg::int(7);
const R14: Reg = Reg::int(14);
const R15: Reg = Reg::int(15);

/// The ELF ABI's register save area every caller provides at its stack
/// pointer for its callee (Cranelift's `REG_SAVE_AREA_SIZE`).
const REG_SAVE_AREA: i64 = 160;

/// `%r6`–`%r13`, then `%f8`–`%f15`: the psABI callee-saved registers minus
/// `%r14` and `%r15`. `%r15` is the stack pointer (installed from
/// `context::SP`). `%r14` is the return address: Cranelift adds it to the
/// clobbers of every call instruction (`link` in `Inst::Call`), so no value
/// ever lives in it across a call and nothing needs it restored. `%r11` has
/// no special role in Cranelift code (it does not use a frame-pointer
/// register), so it is an ordinary callee-saved register here. For the
/// `tail` convention `%r6`/`%r7` are not callee-saved, which is harmless: the
/// unwinder restores what frames saved, and the payloads overwrite both.
static CALLEE_SAVED: [Reg; 16] = [
    R6,
    R7,
    Reg::int(8),
    Reg::int(9),
    Reg::int(10),
    Reg::int(11),
    Reg::int(12),
    Reg::int(13),
    Reg::float(8),
    Reg::float(9),
    Reg::float(10),
    Reg::float(11),
    Reg::float(12),
    Reg::float(13),
    Reg::float(14),
    Reg::float(15),
];

/// C-convention (`system_v`) integer argument registers. A sixth integer
/// argument goes on the stack at `160(%r15)` (only `tail` uses `%r7`).
static INT_ARGS: [Reg; 5] = [R2, R3, R4, R5, R6];

/// Size of the throw stub's frame: the register save area it owes its own
/// callee (the host function) plus the context right above it.
const THROW_FRAME: usize = REG_SAVE_AREA as usize + context::size_bytes(CALLEE_SAVED.len());

// The stubs below hard-code these numbers; fail the build if the context
// layout they were written against changes.
const _: () = {
    assert!(context::PC == 0 && context::SP == 1 && context::FP == 2);
    assert!(context::PAYLOAD0 == 3 && context::PAYLOAD1 == 4);
    assert!(context::ARGS == 5 && context::ARG_COUNT == 6 && context::SAVED == 11);
    assert!(context::size_bytes(CALLEE_SAVED.len()) == 224);
    assert!(THROW_FRAME == 384);
};

/// Throw-capture stub, assembled with GNU as (`s390x-linux-gnu-as`,
/// `objcopy -O binary`).
///
/// On entry (C ABI, `system_v`): `%r2`–`%r6` hold the first five arguments,
/// the sixth is in the caller's outgoing argument area at `160(%r15)`, `%r14`
/// holds the return address and `0(%r15)` the caller's back chain.
///
/// * `stmg %r14,%r15,112(%r15)`: a standard s390x prologue store into the
///   save area the caller provides, so the stub's own frame is walkable like
///   any other (its return address at fp + 112).
/// * The old `%r15` is kept in `%r1` (scratch, not an argument), the frame of
///   384 bytes = 160 (save area for the host function) + 224 (context) is
///   allocated, and the back chain (old `%r15`) is stored at `0(%r15)`. The
///   context starts at `160(%r15)`; all offsets below are 160 + 8 × word.
/// * PC = `%r14`, SP = old `%r15`, FP = `0(old %r15)` (the caller's back
///   chain) — `mvc` copies memory to memory without a spare register.
/// * `stmg %r2,%r6` stores ARGS[0..5] in one go (the argument words are
///   consecutive), `mvc` copies ARGS[5] from `160(old %r15)`.
/// * `stmg %r6,%r13` and eight `std` store the callee-saved registers. `%r6`
///   is stored twice (argument 5 and callee-saved register 0): both are
///   right, it is both.
/// * The host function's address is the 8-byte word just before the stub:
///   `larl %r1` (pc-relative, halfword-scaled: -0x30 halfwords from the
///   `larl` at offset 0x58 is byte -8) then `lg %r1,0(%r1)`. `larl` + `lg`
///   rather than `lgrl`, because `lgrl` requires a doubleword-aligned
///   operand and the contract does not promise an 8-byte aligned stub.
/// * `basr %r14,%r1` with `%r2` = context. `%r15` is callee-saved for the
///   host, so afterwards `la %r2,160(%r15)` re-derives the context address
///   and execution falls through into the resume stub.
static THROW_CODE: [u8; stub_len(THROW_ROWS)] = stub_code(THROW_ROWS);

/// [`THROW_CODE`], one row per instruction (bytes, capstone text). Offsets in
/// hex: 0x180 = 384 is the frame, 0xa0 = 160 the context, 0xa8 = SP, 0xb0 = FP,
/// 0xc8 = ARGS, 0xf0 = ARGS[5], 0xf8 = SAVED, 0x138 = the first float; capstone
/// prints `larl`'s target relative to the stub's first byte: -8 is the
/// literal.
#[rustfmt::skip]
const THROW_ROWS: &[StubRow] = &[
    (&[0xeb, 0xef, 0xf0, 0x70, 0x00, 0x24], "stmg %r14, %r15, 0x70(%r15)"),
    (&[0xb9, 0x04, 0x00, 0x1f], "lgr %r1, %r15"),
    (&[0xa7, 0xfb, 0xfe, 0x80], "aghi %r15, -0x180"),
    (&[0xe3, 0x10, 0xf0, 0x00, 0x00, 0x24], "stg %r1, 0(%r15)"),
    (&[0xe3, 0xe0, 0xf0, 0xa0, 0x00, 0x24], "stg %r14, 0xa0(%r15)"),
    (&[0xe3, 0x10, 0xf0, 0xa8, 0x00, 0x24], "stg %r1, 0xa8(%r15)"),
    (&[0xd2, 0x07, 0xf0, 0xb0, 0x10, 0x00], "mvc 0xb0(8, %r15), 0(%r1)"),
    (&[0xeb, 0x26, 0xf0, 0xc8, 0x00, 0x24], "stmg %r2, %r6, 0xc8(%r15)"),
    (&[0xd2, 0x07, 0xf0, 0xf0, 0x10, 0xa0], "mvc 0xf0(8, %r15), 0xa0(%r1)"),
    (&[0xeb, 0x6d, 0xf0, 0xf8, 0x00, 0x24], "stmg %r6, %r13, 0xf8(%r15)"),
    (&[0x60, 0x80, 0xf1, 0x38], "std %f8, 0x138(%r15)"),
    (&[0x60, 0x90, 0xf1, 0x40], "std %f9, 0x140(%r15)"),
    (&[0x60, 0xa0, 0xf1, 0x48], "std %f10, 0x148(%r15)"),
    (&[0x60, 0xb0, 0xf1, 0x50], "std %f11, 0x150(%r15)"),
    (&[0x60, 0xc0, 0xf1, 0x58], "std %f12, 0x158(%r15)"),
    (&[0x60, 0xd0, 0xf1, 0x60], "std %f13, 0x160(%r15)"),
    (&[0x60, 0xe0, 0xf1, 0x68], "std %f14, 0x168(%r15)"),
    (&[0x60, 0xf0, 0xf1, 0x70], "std %f15, 0x170(%r15)"),
    (&[0xc0, 0x10, 0xff, 0xff, 0xff, 0xd0], "larl %r1, -8"),
    (&[0xe3, 0x10, 0x10, 0x00, 0x00, 0x04], "lg %r1, 0(%r1)"),
    (&[0x41, 0x20, 0xf0, 0xa0], "la %r2, 0xa0(%r15)"),
    (&[0x0d, 0xe1], "basr %r14, %r1"),
    (&[0x41, 0x20, 0xf0, 0xa0], "la %r2, 0xa0(%r15)"),
];

/// Resume stub: the context address arrives in `%r2`, which is never
/// written, so every load reads an intact context.
///
/// Order: the callee-saved floats and `%r6`–`%r13` first, *then* the
/// payloads into `%r6`/`%r7` (they are callee-saved *and* payload
/// registers, so loading the saved values last would lose the payloads).
/// There is no frame-pointer register to install: the back chain lives in
/// memory at the target stack pointer already. The target pc goes to `%r1`
/// (scratch: neither callee-saved, nor a payload, nor the input), `%r15` is
/// loaded last, and `br %r1` jumps.
static RESUME_CODE: [u8; stub_len(RESUME_ROWS)] = stub_code(RESUME_ROWS);

/// [`RESUME_CODE`], one row per instruction (bytes, capstone text): 0x98 =
/// SAVED float 0, 0x58 = SAVED, 0x18 = PAYLOAD0 and PAYLOAD1, 0 = PC, 8 = SP.
#[rustfmt::skip]
const RESUME_ROWS: &[StubRow] = &[
    (&[0x68, 0x80, 0x20, 0x98], "ld %f8, 0x98(%r2)"),
    (&[0x68, 0x90, 0x20, 0xa0], "ld %f9, 0xa0(%r2)"),
    (&[0x68, 0xa0, 0x20, 0xa8], "ld %f10, 0xa8(%r2)"),
    (&[0x68, 0xb0, 0x20, 0xb0], "ld %f11, 0xb0(%r2)"),
    (&[0x68, 0xc0, 0x20, 0xb8], "ld %f12, 0xb8(%r2)"),
    (&[0x68, 0xd0, 0x20, 0xc0], "ld %f13, 0xc0(%r2)"),
    (&[0x68, 0xe0, 0x20, 0xc8], "ld %f14, 0xc8(%r2)"),
    (&[0x68, 0xf0, 0x20, 0xd0], "ld %f15, 0xd0(%r2)"),
    (&[0xeb, 0x6d, 0x20, 0x58, 0x00, 0x04], "lmg %r6, %r13, 0x58(%r2)"),
    (&[0xeb, 0x67, 0x20, 0x18, 0x00, 0x04], "lmg %r6, %r7, 0x18(%r2)"),
    (&[0xe3, 0x10, 0x20, 0x00, 0x00, 0x04], "lg %r1, 0(%r2)"),
    (&[0xe3, 0xf0, 0x20, 0x08, 0x00, 0x04], "lg %r15, 8(%r2)"),
    (&[0x07, 0xf1], "br %r1"),
];

/// Read the 32-bit big-endian field of a RIL-format instruction whose field
/// starts at `offset`, after checking the instruction's opcode with `ok`
/// (first opcode byte, low opcode nibble of the second byte).
fn ril_field(
    code: &mut [u8],
    offset: usize,
    ok: impl Fn(u8, u8) -> bool,
) -> Result<&mut [u8], RelocError> {
    let start = offset
        .checked_sub(2)
        .ok_or(RelocError::UnexpectedInstruction)?;
    let insn = code
        .get_mut(start..offset + 4)
        .ok_or(RelocError::UnexpectedInstruction)?;
    if !ok(insn[0], insn[1] & 0x0f) {
        return Err(RelocError::UnexpectedInstruction);
    }
    Ok(&mut insn[2..])
}

/// Whether a RIL opcode is a branch Cranelift emits with
/// `S390xPLTRel32Dbl`: BRASL (`c0x5`, calls) or BRCL (`c0x4`, `jg` for tail
/// calls).
fn is_plt_branch(op1: u8, op2: u8) -> bool {
    op1 == 0xc0 && matches!(op2, 0x4 | 0x5)
}

/// Whether a RIL opcode takes a halfword-scaled pc-relative 32-bit operand:
/// LARL / BRCL / BRASL (`c0x0/4/5`), the relative-long loads and stores
/// (`c4xx`: LLHRL, LGHRL, LHRL, LLGHRL, STHRL, LGRL, STGRL, LGFRL, LRL,
/// LLGFRL, STRL) and the relative-long compares, EXRL and PFDRL (`c6xx`).
fn is_pcrel_ril(op1: u8, op2: u8) -> bool {
    match op1 {
        0xc0 => matches!(op2, 0x0 | 0x4 | 0x5),
        0xc4 => matches!(op2, 0x2 | 0x4..=0x8 | 0xb..=0xf),
        0xc6 => matches!(op2, 0x0 | 0x2 | 0x4..=0x8 | 0xa | 0xc..=0xf),
        _ => false,
    }
}

/// Patch a halfword-scaled pc-relative field with `value = S + A - P`
/// (`(S + A - P) >> 1`, as ELF's `R_390_PC32DBL`/`PLT32DBL`). Cranelift puts
/// these relocations at the field, instruction + 2, and adds 2 to the
/// addend (`A` = symbol offset + 2), so `S + A - P` is the distance from
/// the instruction's first byte, which is what the hardware adds to.
fn write_pcrel_dbl(field: &mut [u8], value: i64) -> Result<(), RelocError> {
    if value & 1 != 0 {
        return Err(RelocError::Misaligned { value });
    }
    let halfwords = i32::try_from(value >> 1).map_err(|_| RelocError::OutOfRange { value })?;
    field.copy_from_slice(&halfwords.to_be_bytes());
    Ok(())
}

/// Throw-to-entry stub ([`crate::abi::THROW_TO_ENTRY_SYMBOL`]): the O(1)
/// delivery, with no context. The tag and payloads arrive in `%r2`–`%r4`
/// and go on, untouched, to the host function (the word 8 bytes before the
/// stub, `larl` + `lg` as in the throw stub), which records them as the
/// call's outcome and returns the innermost call's buffer in `%r2`. The stub
/// takes no frame: the host function saves its registers in the save area
/// the JIT caller provided for the stub, which the stub does not use, and
/// `basr` clobbers `%r14` (nothing returns here). It then loads the handler
/// record the entry trampoline keeps in the buffer header (pc at 8, sp at
/// 16, `%r15` last; there is no frame-pointer register, see the resume stub)
/// and jumps: the trampoline's handler needs nothing but its frame.
static TO_ENTRY_CODE: [u8; stub_len(TO_ENTRY_ROWS)] = stub_code(TO_ENTRY_ROWS);

/// [`TO_ENTRY_CODE`], one row per instruction (bytes, capstone text); `larl`'s
/// target is printed relative to the stub's first byte: -8 is the literal.
#[rustfmt::skip]
const TO_ENTRY_ROWS: &[StubRow] = &[
    (&[0xc0, 0x10, 0xff, 0xff, 0xff, 0xfc], "larl %r1, -8"),
    (&[0xe3, 0x10, 0x10, 0x00, 0x00, 0x04], "lg %r1, 0(%r1)"),
    (&[0x0d, 0xe1], "basr %r14, %r1"),
    (&[0xe3, 0x10, 0x20, 0x08, 0x00, 0x04], "lg %r1, 8(%r2)"),
    (&[0xe3, 0xf0, 0x20, 0x10, 0x00, 0x04], "lg %r15, 0x10(%r2)"),
    (&[0x07, 0xf1], "br %r1"),
];

/// The facts of s390x.
pub(super) const SPEC: IsaSpec = IsaSpec {
    arch: Arch::S390x,
    // fp = back chain value = the caller's stack pointer: the caller's
    // back chain (its fp) is at [fp], and STMG put %r14 at fp + 8*14.
    frame_links: FrameLinks {
        caller_fp_offset: 0,
        return_address_offset: 14 * 8,
        return_address_mask: u64::MAX,
    },
    // `exception_payload_regs` in Cranelift's s390x abi.rs, for system_v
    // and tail alike.
    payload_regs: [R6, R7],
    callee_saved: &CALLEE_SAVED,
    stack_pointer: R15,
    frame_pointer: None,
    int_arg_regs: &INT_ARGS,
    // `r2`: the C convention's first integer result.
    result_register: R2,
    // Cranelift records an s390x trap at the last byte of the trapping
    // instruction (at most 6 bytes), since the hardware reports some
    // program interruptions after the instruction.
    trap_record_skew: 5,
    link_register: Some(R14),
    prologue_frame_value: Some(R1),
    register_names: RegisterNames {
        int: &[],
        int_prefix: "%r",
        float: &[],
        float_prefix: "%f",
    },
    // Cranelift 0.135 reaches far symbols on s390x through an inline
    // 8-byte literal (`bras %r1, 12; .quad sym; lg`, an Abs8
    // relocation), never through a GOT.
    got_relocations: &[],
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
    behaviour: &S390x,
};

impl IsaBehaviour for S390x {
    fn apply_relocation(&self, site: RelocSite<'_>) -> Result<(), RelocError> {
        let value = site.value();
        let (kind, code, offset, place) = (site.kind, site.code, site.offset, site.place);
        match kind {
            // Near calls (`brasl %r14`) and near tail calls (`jg`).
            Reloc::S390xPLTRel32Dbl => {
                let field = ril_field(code, offset, is_plt_branch)?;
                write_pcrel_dbl(field, value.wrapping_sub(place) as i64)
            }
            // Near func_addr / symbol_value (`larl`) and symbol loads and
            // stores (`lgrl`, `strl`, ...).
            Reloc::S390xPCRel32Dbl => {
                let field = ril_field(code, offset, is_pcrel_ril)?;
                write_pcrel_dbl(field, value.wrapping_sub(place) as i64)
            }
            // S390xTlsGd64 / S390xTlsGdCall (TLS), and other ISAs' kinds.
            _ => Err(RelocError::Unsupported),
        }
    }

    /// Cranelift's s390x unwind instructions are relative to the *entry*
    /// stack pointer `S`, not to a frame-pointer register:
    /// `DefineNewFrame` is emitted before any stack adjustment and says the
    /// CFA is `S + offset_upward_to_caller_sp` and the clobber area starts
    /// at `S - offset_downward_to_clobbers`; a `SaveReg` slot is at
    /// `S - offset_downward_to_clobbers + clobber_offset` (the CFA-relative
    /// form Cranelift's DWARF writer uses is the same).
    ///
    /// This crate's fp is the back chain value, `CFA - 160` (for system_v
    /// `S`, for a `tail` callee with incoming stack arguments `S` plus their
    /// size, which Cranelift folds into `offset_upward_to_caller_sp`). So:
    ///
    /// ```text
    /// slot = fp + 160 - offset_upward_to_caller_sp
    ///           - offset_downward_to_clobbers + clobber_offset
    /// ```
    ///
    /// which puts `%ri` (saved by STMG) at `fp + 8*i` and `%f8`... at
    /// `fp - clobber area size + 8*k` — the clobber area ends at fp. The
    /// generic [`super::fp_relative_saved_registers`] would be wrong for
    /// `tail` functions with stack arguments.
    ///
    /// `%r14` (return address, see [`IsaSpec::frame_links`]) and `%r15` (the
    /// stack pointer, sometimes described by `RegStackOffset` instead) are
    /// not callee-saved registers in this crate's sense and are skipped.
    fn saved_registers(&self, unwind: &[(u32, UnwindInst)]) -> Result<Vec<SavedRegister>, String> {
        let mut base = None;
        let mut saved = Vec::new();
        for (_, inst) in unwind {
            match inst {
                UnwindInst::DefineNewFrame {
                    offset_upward_to_caller_sp,
                    offset_downward_to_clobbers,
                } => {
                    base = Some(
                        REG_SAVE_AREA
                            - i64::from(*offset_upward_to_caller_sp)
                            - i64::from(*offset_downward_to_clobbers),
                    );
                }
                UnwindInst::SaveReg {
                    clobber_offset,
                    reg,
                } => {
                    let base =
                        base.ok_or("unwind info saves a register before defining a frame")?;
                    let reg = Reg::from_cranelift(*reg)
                        .ok_or("unwind info saves a vector-class register")?;
                    if reg == R14 || reg == R15 {
                        continue;
                    }
                    saved.push(SavedRegister {
                        reg,
                        fp_offset: base + i64::from(*clobber_offset),
                    });
                }
                // `RegStackOffset` only ever describes %r15 (the unwound SP
                // of a tail callee); `StackAlloc` moves SP, not fp.
                _ => {}
            }
        }
        Ok(saved)
    }
}

#[cfg(test)]
mod tests;
