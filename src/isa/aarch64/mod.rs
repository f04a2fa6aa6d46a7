//! aarch64 (Linux, AAPCS64): frame layout, registers, relocations and stubs.
//!
//! Facts checked against Cranelift 0.135.8's aarch64 backend
//! (`isa/aarch64/abi.rs`, `inst/emit.rs`, `lower.isle`, `inst.isle`):
//!
//! * Frame: with `preserve_frame_pointers` every function's prologue is
//!   `stp x29, x30, [sp, #-16]!; mov x29, sp` (`gen_prologue_frame_setup`), so
//!   the caller's fp is at `[x29]` and the return address at `[x29 + 8]`.
//! * Clobber saves (`gen_clobber_save`) are pushed with pre-indexed
//!   `stp`/`str [sp, #-16]!` directly below that pair, and the unwind
//!   instructions describe them by `DefineNewFrame { offset_downward_to_clobbers
//!   = clobber_size }` and `SaveReg { clobber_offset }` counted upward from the
//!   lowest clobber slot, i.e. a slot lives at `x29 - clobber_size +
//!   clobber_offset`, which is what [`fp_relative_saved_registers`] computes.
//! * Relocations: direct `call`/`try_call`/`return_call` to a near
//!   (colocated) function is `bl`/`b` with `Arm64Call`; `func_addr` /
//!   `symbol_value` (and calls to far functions, through a register) are
//!   `adrp; add` (`Aarch64AdrPrelPgHi21` + `Aarch64AddAbsLo12Nc`) when near,
//!   an inline 8-byte literal (`Abs8`) when far, and `adrp; ldr` through the
//!   GOT (`Aarch64AdrGotPage21` + `Aarch64Ld64GotLo12Nc`) whenever `is_pic`
//!   is set (a symbol offset is then a separate `add` after the load; the
//!   GOT relocations carry addend 0). Cranelift's aarch64 backend never emits
//!   `Abs4`; it is patched anyway, with ELF `R_AARCH64_ABS32`'s range. The
//!   TLS kinds (`Aarch64TlsDesc*`, `MachOAarch64Tls*`) are not supported.
//! * Not covered: with `sign_return_address` the saved lr at `[x29 + 8]` is
//!   PAC-signed (off by default); the `preserve_all` convention saves whole
//!   vector registers without unwind records, so those saves are not seen.

use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::isa::unwind::UnwindInst;

use super::{
    Arch, FrameLinks, IsaBehaviour, IsaSpec, Reg, RegisterNames, RelocError, RelocSite,
    SavedRegister, Stub, StubRow, context, fp_relative_saved_registers, read_le32, stub_code,
    stub_len, write_le32,
};

/// The code of aarch64 (AAPCS64 on Linux).
pub struct Aarch64;

const X0: Reg = Reg::int(0);
const X1: Reg = Reg::int(1);
/// The frame pointer.
const FP: Reg = Reg::int(29);
/// The link register.
const LR: Reg = Reg::int(30);
/// Hardware number 31 is the stack pointer in every instruction this crate
/// cares about (Cranelift's `stack_reg()` is `xreg(31)` too); capstone and
/// unicorn call it `sp`. In other operand positions 31 means `xzr`, which is
/// never a register this crate names.
const SP: Reg = Reg::int(31);

/// x19–x28, then d8–d15 (the low 64 bits of v8–v15, all AAPCS64 preserves).
/// x29 is the frame pointer (captured and installed as FP) and x30 the link
/// register (captured as PC), so neither is listed.
static CALLEE_SAVED: [Reg; 18] = [
    Reg::int(19),
    Reg::int(20),
    Reg::int(21),
    Reg::int(22),
    Reg::int(23),
    Reg::int(24),
    Reg::int(25),
    Reg::int(26),
    Reg::int(27),
    Reg::int(28),
    Reg::float(8),
    Reg::float(9),
    Reg::float(10),
    Reg::float(11),
    Reg::float(12),
    Reg::float(13),
    Reg::float(14),
    Reg::float(15),
];

static INT_ARGS: [Reg; 8] = [
    Reg::int(0),
    Reg::int(1),
    Reg::int(2),
    Reg::int(3),
    Reg::int(4),
    Reg::int(5),
    Reg::int(6),
    Reg::int(7),
];

/// Size of the context the throw stub reserves: 29 words rounded up to 240
/// bytes. The stub code below hard-codes these offsets; this fails to build if
/// the shared layout in `super::context` ever moves.
const CONTEXT_BYTES: usize = 240;
const _: () = {
    assert!(context::size_bytes(CALLEE_SAVED.len()) == CONTEXT_BYTES);
    assert!(context::PC == 0 && context::SP == 1 && context::FP == 2);
    assert!(context::PAYLOAD0 == 3 && context::PAYLOAD1 == 4);
    assert!(context::ARGS == 5 && context::ARG_COUNT == 6);
    assert!(context::SAVED == 11);
};

/// Throw-capture stub (80 bytes), assembled with GNU as. On entry (AAPCS64)
/// sp is 16-byte aligned, x0–x5 hold the six arguments, x29 is the caller's
/// frame pointer and x30 (lr) the return address.
///
/// * `sub sp, sp, #0xf0` reserves the 240-byte context at the new sp, which
///   stays 16-byte aligned for the host call.
/// * Arguments go to words 5–10 (offsets 0x28–0x50), x19–x28 to words 11–20
///   (0x58–0xa0) and d8–d15 to words 21–28 (0xa8–0xe0), all as pairs.
/// * x9 (a caller-saved temporary) computes the entry sp (`sp + 0xf0`) so that
///   `stp x30, x9, [sp]` stores PC = lr in word 0 and SP in word 1 together;
///   `str x29` fills word 2. lr is thus saved inside the context, where the
///   resume stub finds it, before `blr` overwrites it.
/// * The host function's address is the 8-byte word just before the stub's
///   first byte; `ldr x16, <literal>` at stub offset 0x40 reaches it at
///   offset -0x48 (x16 = IP0, a scratch register neither callee-saved nor an
///   argument).
/// * `mov x0, sp; blr x16` passes the context. x0 is caller-saved, so after
///   the call `mov x0, sp` re-creates the context pointer (sp is preserved by
///   the callee) and execution falls through into [`RESUME_CODE`].
static THROW_CODE: [u8; stub_len(THROW_ROWS)] = stub_code(THROW_ROWS);

/// [`THROW_CODE`], one row per instruction (bytes, capstone text). Disassembled
/// at address 0, the literal load (at 0x40, displacement -0x48) prints its
/// target address: -8, the host-function word just before the stub.
#[rustfmt::skip]
const THROW_ROWS: &[StubRow] = &[
    (&[0xff, 0xc3, 0x03, 0xd1], "sub sp, sp, #0xf0"),
    (&[0xe0, 0x87, 0x02, 0xa9], "stp x0, x1, [sp, #0x28]"),
    (&[0xe2, 0x8f, 0x03, 0xa9], "stp x2, x3, [sp, #0x38]"),
    (&[0xe4, 0x97, 0x04, 0xa9], "stp x4, x5, [sp, #0x48]"),
    (&[0xf3, 0xd3, 0x05, 0xa9], "stp x19, x20, [sp, #0x58]"),
    (&[0xf5, 0xdb, 0x06, 0xa9], "stp x21, x22, [sp, #0x68]"),
    (&[0xf7, 0xe3, 0x07, 0xa9], "stp x23, x24, [sp, #0x78]"),
    (&[0xf9, 0xeb, 0x08, 0xa9], "stp x25, x26, [sp, #0x88]"),
    (&[0xfb, 0xf3, 0x09, 0xa9], "stp x27, x28, [sp, #0x98]"),
    (&[0xe8, 0xa7, 0x0a, 0x6d], "stp d8, d9, [sp, #0xa8]"),
    (&[0xea, 0xaf, 0x0b, 0x6d], "stp d10, d11, [sp, #0xb8]"),
    (&[0xec, 0xb7, 0x0c, 0x6d], "stp d12, d13, [sp, #0xc8]"),
    (&[0xee, 0xbf, 0x0d, 0x6d], "stp d14, d15, [sp, #0xd8]"),
    (&[0xe9, 0xc3, 0x03, 0x91], "add x9, sp, #0xf0"),
    (&[0xfe, 0x27, 0x00, 0xa9], "stp x30, x9, [sp]"),
    (&[0xfd, 0x0b, 0x00, 0xf9], "str x29, [sp, #0x10]"),
    (&[0xd0, 0xfd, 0xff, 0x58], "ldr x16, #0xfffffffffffffff8"),
    (&[0xe0, 0x03, 0x00, 0x91], "mov x0, sp"),
    (&[0x00, 0x02, 0x3f, 0xd6], "blr x16"),
    (&[0xe0, 0x03, 0x00, 0x91], "mov x0, sp"),
];

/// Resume stub (68 bytes). The context pointer arrives in x0, which is also
/// the first payload register, so:
///
/// * x19–x28 and d8–d15 are loaded first, in pairs (none of them is x0).
/// * PC goes to x16 and SP to x17 (IP0/IP1), FP to x9: scratch registers that
///   are neither callee-saved nor payload registers, so x29 and sp are not
///   written while anything remains to be read from the context (which lies
///   below the new sp once sp is installed).
/// * payload1 → x1, then payload0 → x0 last of all loads (`ldr x0, [x0,
///   #0x18]` reads its base before writing it).
/// * Then `mov x29, x9`, `mov sp, x17` and `br x16`.
///
/// Registers are installed in the order the [`IsaSpec`] contract asks:
/// saved registers, payloads, FP, SP, then the jump.
static RESUME_CODE: [u8; stub_len(RESUME_ROWS)] = stub_code(RESUME_ROWS);

/// [`RESUME_CODE`], one row per instruction (bytes, capstone text).
#[rustfmt::skip]
const RESUME_ROWS: &[StubRow] = &[
    (&[0x13, 0xd0, 0x45, 0xa9], "ldp x19, x20, [x0, #0x58]"),
    (&[0x15, 0xd8, 0x46, 0xa9], "ldp x21, x22, [x0, #0x68]"),
    (&[0x17, 0xe0, 0x47, 0xa9], "ldp x23, x24, [x0, #0x78]"),
    (&[0x19, 0xe8, 0x48, 0xa9], "ldp x25, x26, [x0, #0x88]"),
    (&[0x1b, 0xf0, 0x49, 0xa9], "ldp x27, x28, [x0, #0x98]"),
    (&[0x08, 0xa4, 0x4a, 0x6d], "ldp d8, d9, [x0, #0xa8]"),
    (&[0x0a, 0xac, 0x4b, 0x6d], "ldp d10, d11, [x0, #0xb8]"),
    (&[0x0c, 0xb4, 0x4c, 0x6d], "ldp d12, d13, [x0, #0xc8]"),
    (&[0x0e, 0xbc, 0x4d, 0x6d], "ldp d14, d15, [x0, #0xd8]"),
    (&[0x10, 0x00, 0x40, 0xf9], "ldr x16, [x0]"),
    (&[0x11, 0x04, 0x40, 0xf9], "ldr x17, [x0, #8]"),
    (&[0x09, 0x08, 0x40, 0xf9], "ldr x9, [x0, #0x10]"),
    (&[0x01, 0x10, 0x40, 0xf9], "ldr x1, [x0, #0x20]"),
    (&[0x00, 0x0c, 0x40, 0xf9], "ldr x0, [x0, #0x18]"),
    (&[0xfd, 0x03, 0x09, 0xaa], "mov x29, x9"),
    (&[0x3f, 0x02, 0x00, 0x91], "mov sp, x17"),
    (&[0x00, 0x02, 0x1f, 0xd6], "br x16"),
];

// Instruction classes a relocation may patch: (mask, expected bits).

/// `b` / `bl` imm26 (`return_call` uses `b`, calls use `bl`).
const B_OR_BL: (u32, u32) = (0x7c00_0000, 0x1400_0000);
/// `adrp xd, #page`.
const ADRP: (u32, u32) = (0x9f00_0000, 0x9000_0000);
/// `add xd, xn, #imm12` (64-bit, unshifted immediate).
const ADD_X_IMM: (u32, u32) = (0xff80_0000, 0x9100_0000);
/// `ldr xt, [xn, #imm12 * 8]` (64-bit load, unsigned scaled offset).
const LDR_X_UIMM: (u32, u32) = (0xffc0_0000, 0xf940_0000);

/// Read the instruction at the site and check its class.
fn read_insn(code: &[u8], offset: usize, class: (u32, u32)) -> Result<u32, RelocError> {
    read_le32(code, offset)
        .filter(|insn| insn & class.0 == class.1)
        .ok_or(RelocError::UnexpectedInstruction)
}

/// Replace `width` bits at `shift` in `insn` with the low bits of `field`.
fn set_field(insn: u32, shift: u32, width: u32, field: u64) -> u32 {
    let mask = ((1u32 << width) - 1) << shift;
    (insn & !mask) | (((field as u32) << shift) & mask)
}

/// `Page(value) - Page(place)` in bytes, checked for adrp's signed 21-bit
/// page count (±4 GiB).
fn page_delta(value: u64, place: u64) -> Result<i64, RelocError> {
    let delta = (value & !0xfff).wrapping_sub(place & !0xfff) as i64;
    if (-(1i64 << 32)..(1i64 << 32)).contains(&delta) {
        Ok(delta)
    } else {
        Err(RelocError::OutOfRange { value: delta })
    }
}

/// Throw-to-entry stub ([`crate::abi::THROW_TO_ENTRY_SYMBOL`]): the O(1)
/// delivery, with no context. The tag and payloads arrive in w0, x1 and x2
/// and go on, untouched, to the host function (the literal 8 bytes before
/// the stub, loaded into x16), which records them as the call's outcome and
/// returns the innermost call's buffer in x0 (`blr` clobbers lr: nothing
/// returns here). The stub installs the handler record the entry trampoline
/// keeps in the buffer header (pc at 8, sp at 16, fp at 24; sp through x17)
/// and jumps: the trampoline's handler needs nothing but its frame.
static TO_ENTRY_CODE: [u8; stub_len(TO_ENTRY_ROWS)] = stub_code(TO_ENTRY_ROWS);

/// [`TO_ENTRY_CODE`], one row per instruction (bytes, capstone text).
#[rustfmt::skip]
const TO_ENTRY_ROWS: &[StubRow] = &[
    (&[0xd0, 0xff, 0xff, 0x58], "ldr x16, #0xfffffffffffffff8"),
    (&[0x00, 0x02, 0x3f, 0xd6], "blr x16"),
    (&[0x10, 0x04, 0x40, 0xf9], "ldr x16, [x0, #8]"),
    (&[0x11, 0x08, 0x40, 0xf9], "ldr x17, [x0, #0x10]"),
    (&[0x1d, 0x0c, 0x40, 0xf9], "ldr x29, [x0, #0x18]"),
    (&[0x3f, 0x02, 0x00, 0x91], "mov sp, x17"),
    (&[0x00, 0x02, 0x1f, 0xd6], "br x16"),
];

/// The facts of aarch64.
pub(super) const SPEC: IsaSpec = IsaSpec {
    arch: Arch::Aarch64,
    // stp x29, x30, [sp, #-16]!; mov x29, sp: [x29] = caller's x29,
    // [x29 + 8] = x30, the return address.
    frame_links: FrameLinks {
        caller_fp_offset: 0,
        return_address_offset: 8,
        // With `sign_return_address`, lr is stored signed by `paciasp`:
        // the pointer-authentication code sits above the 48-bit virtual
        // address. Code addresses of a Linux process are user addresses
        // (bit 55 clear, no tag), so stripping is clearing bits 48–63 —
        // what `xpaclri` leaves for such an address.
        return_address_mask: (1 << 48) - 1,
    },
    payload_regs: [X0, X1],
    callee_saved: &CALLEE_SAVED,
    stack_pointer: SP,
    frame_pointer: Some(FP),
    int_arg_regs: &INT_ARGS,
    // The C convention's first integer result.
    result_register: X0,
    trap_record_skew: 0,
    link_register: Some(LR),
    prologue_frame_value: None,
    // Capstone's names: `x0`…`x30`, `sp` for 31; floats by their 64-bit
    // view, `d0`…`d31`, the part AAPCS64 preserves.
    register_names: RegisterNames {
        int: &[
            "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13",
            "x14", "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25",
            "x26", "x27", "x28", "x29", "x30", "sp",
        ],
        int_prefix: "x",
        float: &[],
        float_prefix: "d",
    },
    got_relocations: &[Reloc::Aarch64AdrGotPage21, Reloc::Aarch64Ld64GotLo12Nc],
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
    behaviour: &Aarch64,
};

impl IsaBehaviour for Aarch64 {
    fn apply_relocation(&self, site: RelocSite<'_>) -> Result<(), RelocError> {
        // S + A; for the GOT kinds S is the GOT slot's address.
        let value = site.value();
        let (kind, code, offset, place) = (site.kind, site.code, site.offset, site.place);
        match kind {
            // R_AARCH64_CALL26 / JUMP26: imm26 = (S + A - P) >> 2, ±128 MiB.
            Reloc::Arm64Call => {
                let insn = read_insn(code, offset, B_OR_BL)?;
                let disp = value.wrapping_sub(place) as i64;
                if disp & 3 != 0 {
                    return Err(RelocError::Misaligned { value: disp });
                }
                if !(-(1i64 << 27)..(1i64 << 27)).contains(&disp) {
                    return Err(RelocError::OutOfRange { value: disp });
                }
                write_le32(code, offset, set_field(insn, 0, 26, (disp >> 2) as u64));
                Ok(())
            }
            // R_AARCH64_ADR_PREL_PG_HI21 / ADR_GOT_PAGE:
            // adrp imm21 = Page(S + A) - Page(P) in pages, split immlo:immhi.
            Reloc::Aarch64AdrPrelPgHi21 | Reloc::Aarch64AdrGotPage21 => {
                let insn = read_insn(code, offset, ADRP)?;
                let pages = (page_delta(value, place)? >> 12) as u64;
                let insn = set_field(insn, 29, 2, pages & 3);
                let insn = set_field(insn, 5, 19, pages >> 2);
                write_le32(code, offset, insn);
                Ok(())
            }
            // R_AARCH64_ADD_ABS_LO12_NC: add imm12 = (S + A) & 0xfff, no check.
            Reloc::Aarch64AddAbsLo12Nc => {
                let insn = read_insn(code, offset, ADD_X_IMM)?;
                write_le32(code, offset, set_field(insn, 10, 12, value & 0xfff));
                Ok(())
            }
            // R_AARCH64_LD64_GOT_LO12_NC: ldr imm12 = ((G + A) & 0xfff) >> 3,
            // the slot 8-byte aligned.
            Reloc::Aarch64Ld64GotLo12Nc => {
                let insn = read_insn(code, offset, LDR_X_UIMM)?;
                if value & 7 != 0 {
                    return Err(RelocError::Misaligned {
                        value: value as i64,
                    });
                }
                write_le32(code, offset, set_field(insn, 10, 12, (value & 0xfff) >> 3));
                Ok(())
            }
            // TLS (Aarch64TlsDesc*, MachOAarch64Tls*) and other ISAs' kinds.
            _ => Err(RelocError::Unsupported),
        }
    }

    fn saved_registers(&self, unwind: &[(u32, UnwindInst)]) -> Result<Vec<SavedRegister>, String> {
        // x29 points at the saved (x29, x30) pair and the clobbers are pushed
        // just below it; `clobber_offset` counts up from the lowest clobber
        // slot, which is `offset_downward_to_clobbers` below x29 (see the
        // module comment and the `saved_registers_match_prologue` test).
        fp_relative_saved_registers(unwind)
    }
}

#[cfg(test)]
mod tests;
