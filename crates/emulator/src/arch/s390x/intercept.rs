//! s390x instructions unicorn 2.1.5 (QEMU 5.0's TCG) executes without any
//! exception but wrongly, carried out here from a code hook on each of their
//! addresses (see `EmuArch::intercepts`). Semantics follow the
//! z/Architecture Principles of Operation:
//!
//! * Signed add and subtract, register forms `AR`, `SR`, `AGR`, `SGR`,
//!   `ARK`, `SRK`, `AGRK`, `SGRK` and `AFI`: QEMU 5 finds the overflow by
//!   the operands' and result's signs with strict comparisons, so `MIN + MIN`
//!   (sum 0) and `0 - MIN` give condition code 0 or 1 instead of 3. Only
//!   those whose condition code is read before it is set again are
//!   intercepted (`sadd_overflow`/`ssub_overflow`), see [`reads_cc_after`];
//!   plain `iadd`s keep running at full speed. A fixed-point-overflow
//!   interruption enabled in the PSW program mask is reported as an error.
//! * CONVERT TO LOGICAL from short, long and extended BFP to 32 and 64 bits
//!   (`CLFEBR`, `CLFDBR`, `CLFXBR`, `CLGEBR`, `CLGDBR`, `CLGXBR`) and
//!   `VCLGD` (`vclgdb`/`wclgdb`): QEMU 5 converts a NaN to all ones where the
//!   architecture gives 0. Every rounding mode of M3/M5 (and the FPC's),
//!   the inexact-suppression bit, the single-element bit, the condition
//!   code of the scalar forms (0 zero, 1 negative, 2 positive, 3 invalid)
//!   and the FPC's IEEE invalid and inexact flags are honoured. When the
//!   FPC enables the trap for an exception the conversion raises, the
//!   instruction is left to unicorn, which traps (its results differ only
//!   for NaNs, which are invalid operations).
//! * `RNSBG`, `ROSBG`, `RXSBG` with the test-only bit (I3 bit 0): QEMU 5
//!   combines the rotated operand with an uninitialised value instead of
//!   the first operand, so the condition code (selected bits zero: 0, else
//!   1) is wrong; the first operand is left unchanged.

use cranelift_exn::Error;
use cranelift_exn::memory::Memory;
use unicorn_engine::RegisterS390X;

use super::vector::{read_vr, write_vr};
use crate::core::Core;

/// Length of the instruction whose first byte is `first`, from its two
/// leftmost bits.
pub(super) fn length(first: u8) -> usize {
    match first >> 6 {
        0 => 2,
        1 | 2 => 4,
        _ => 6,
    }
}

/// A signed add or subtract this module carries out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AddSub {
    subtract: bool,
    /// 64-bit operands (else the low words, the high word of R1 kept).
    wide: bool,
    r1: u8,
    /// The first operand's register (R1 for the two-operand forms).
    left: u8,
    right: Operand,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operand {
    Reg(u8),
    Imm(i32),
}

/// A CONVERT TO LOGICAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ToLogical {
    source: Format,
    /// Result bits: 32 or 64.
    bits: u32,
    /// The rounding-method field (M3, or M5 of `VCLGD`).
    mode: u8,
    /// The M4 field: bit 4 suppresses inexact, bit 8 (`VCLGD`) selects the
    /// single-element form.
    m4: u8,
    target: Target,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// Scalar: general register R1 from floating-point register R2 (the
    /// pair R2, R2 + 2 for extended).
    Gpr { r1: u8, r2: u8 },
    /// `VCLGD`: vector register V1 from V2, doubleword elements.
    Vector { v1: u8, v2: u8 },
}

/// A binary floating-point format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Short,
    Long,
    Extended,
}

/// `RNSBG`/`ROSBG`/`RXSBG` with the test-only bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RotateTest {
    op: BitOp,
    r1: u8,
    r2: u8,
    start: u32,
    end: u32,
    rotate: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BitOp {
    And,
    Or,
    Xor,
}

/// An instruction this module carries out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Insn {
    AddSub(AddSub),
    ToLogical(ToLogical),
    RotateTest(RotateTest),
}

/// Decode `insn` (exactly one instruction's bytes) if it is one of this
/// module's. Encodings the architecture rejects (a bad register pair or
/// rounding mode, `VCLGD` of words, which is a z15 instruction) are not,
/// so that unicorn raises their exception.
fn decode(insn: &[u8]) -> Option<Insn> {
    let op16 = u16::from_be_bytes([insn[0], *insn.get(1)?]);
    let rr = |b: u8| (b >> 4, b & 0xf);
    match insn.len() {
        2 => {
            let (r1, r2) = rr(insn[1]);
            let subtract = match insn[0] {
                0x1a => false,
                0x1b => true,
                _ => return None,
            };
            Some(Insn::AddSub(AddSub {
                subtract,
                wide: false,
                r1,
                left: r1,
                right: Operand::Reg(r2),
            }))
        }
        4 => {
            let (r1, r2) = rr(insn[3]);
            let r3 = insn[2] >> 4;
            let two = |subtract, wide| {
                Some(Insn::AddSub(AddSub {
                    subtract,
                    wide,
                    r1,
                    left: r1,
                    right: Operand::Reg(r2),
                }))
            };
            let three = |subtract, wide| {
                Some(Insn::AddSub(AddSub {
                    subtract,
                    wide,
                    r1,
                    left: r2,
                    right: Operand::Reg(r3),
                }))
            };
            let (source, bits) = match op16 {
                0xb908 => return two(false, true),
                0xb909 => return two(true, true),
                0xb9f8 => return three(false, false),
                0xb9f9 => return three(true, false),
                0xb9e8 => return three(false, true),
                0xb9e9 => return three(true, true),
                0xb39c => (Format::Short, 32),
                0xb39d => (Format::Long, 32),
                0xb39e => (Format::Extended, 32),
                0xb3ac => (Format::Short, 64),
                0xb3ad => (Format::Long, 64),
                0xb3ae => (Format::Extended, 64),
                _ => return None,
            };
            let (mode, m4) = rr(insn[2]);
            // The extended format needs a register pair.
            if !valid_mode(mode) || (source == Format::Extended && r2 & 2 != 0) {
                return None;
            }
            Some(Insn::ToLogical(ToLogical {
                source,
                bits,
                mode,
                m4,
                target: Target::Gpr { r1, r2 },
            }))
        }
        _ => {
            // AFI: RIL-a, `C2 r1/9 i2(32)`.
            if insn[0] == 0xc2 && insn[1] & 0xf == 9 {
                let imm = i32::from_be_bytes([insn[2], insn[3], insn[4], insn[5]]);
                let r1 = insn[1] >> 4;
                return Some(Insn::AddSub(AddSub {
                    subtract: false,
                    wide: false,
                    r1,
                    left: r1,
                    right: Operand::Imm(imm),
                }));
            }
            // VCLGD: VRR-a, `E7 v1 v2 -- m5 m4 m3 rxb C0`.
            if insn[0] == 0xe7 && insn[5] == 0xc0 {
                let rxb = insn[4] & 0xf;
                let (m5, m4, m3) = (insn[3] >> 4, insn[3] & 0xf, insn[4] >> 4);
                if m3 != 3 || !valid_mode(m5) {
                    return None;
                }
                return Some(Insn::ToLogical(ToLogical {
                    source: Format::Long,
                    bits: 64,
                    mode: m5,
                    m4,
                    target: Target::Vector {
                        v1: (insn[1] >> 4) | (rxb & 8) << 1,
                        v2: (insn[1] & 0xf) | (rxb & 4) << 2,
                    },
                }));
            }
            // RNSBG/ROSBG/RXSBG: RIE-f, `EC r1 r2 i3 i4 i5 op`.
            if insn[0] == 0xec && insn[2] & 0x80 != 0 {
                let op = match insn[5] {
                    0x54 => BitOp::And,
                    0x56 => BitOp::Or,
                    0x57 => BitOp::Xor,
                    _ => return None,
                };
                let (r1, r2) = rr(insn[1]);
                return Some(Insn::RotateTest(RotateTest {
                    op,
                    r1,
                    r2,
                    start: u32::from(insn[2] & 63),
                    end: u32::from(insn[3] & 63),
                    rotate: u32::from(insn[4] & 63),
                }));
            }
            None
        }
    }
}

/// A BFP rounding-method field value the architecture accepts: 0 (the
/// FPC's), 1 and 3 to 7.
fn valid_mode(mode: u8) -> bool {
    mode <= 7 && mode != 2
}

/// The condition mask of a conditional branch, load, store or select, if
/// `insn` is one.
fn condition_mask(insn: &[u8]) -> Option<u8> {
    let op16 = u16::from_be_bytes([insn[0], insn[1]]);
    match insn.len() {
        // BCR M1,R2.
        2 if insn[0] == 0x07 => Some(insn[1] >> 4),
        // BC M1,D2(X2,B2), BRC M1,RI2.
        4 if insn[0] == 0x47 || (insn[0] == 0xa7 && insn[1] & 0xf == 4) => Some(insn[1] >> 4),
        // LOCR, LOCGR, LOCFHR (RRF-c: M3 in bits 16–19).
        4 if matches!(op16, 0xb9f2 | 0xb9e2 | 0xb9e0) => Some(insn[2] >> 4),
        // SELR, SELGR, SELFHR (RRF-a: M4 in bits 20–23).
        4 if matches!(op16, 0xb9f0 | 0xb9e3 | 0xb9c0) => Some(insn[2] & 0xf),
        // BRCL M1,RI2.
        6 if insn[0] == 0xc0 && insn[1] & 0xf == 4 => Some(insn[1] >> 4),
        // LOCHI, LOCGHI, LOCHHI; LOC, LOCG, LOCFH, STOC, STOCG, STOCFH: M3
        // in bits 12–15.
        6 if (insn[0] == 0xec && matches!(insn[5], 0x42 | 0x46 | 0x4e))
            || (insn[0] == 0xeb && matches!(insn[5], 0xf2 | 0xe2 | 0xe0 | 0xf3 | 0xe3 | 0xe1)) =>
        {
            Some(insn[1] & 0xf)
        }
        _ => None,
    }
}

/// Whether `insn` reads the condition code: a branch, load, store or
/// select on a condition other than never/always, `IPM`, or an add or
/// subtract with carry/borrow.
fn reads_cc(insn: &[u8]) -> bool {
    if condition_mask(insn).is_some_and(|m| m != 0 && m != 15) {
        return true;
    }
    let op16 = u16::from_be_bytes([insn[0], insn[1]]);
    match insn.len() {
        // IPM, ALCR, ALCGR, SLBR, SLBGR.
        4 => matches!(op16, 0xb222 | 0xb998 | 0xb988 | 0xb999 | 0xb989),
        // ALC, ALCG, SLB, SLBG.
        6 => insn[0] == 0xe3 && matches!(insn[5], 0x98 | 0x88 | 0x99 | 0x89),
        _ => false,
    }
}

/// Whether `insn` certainly replaces the condition code (every form listed
/// sets it, whatever its operands), or is a call, after which the ABI
/// leaves the condition code undefined.
fn sets_cc(insn: &[u8]) -> bool {
    let op16 = u16::from_be_bytes([insn[0], insn[1]]);
    match insn.len() {
        // LTR, CLR, NR, OR, XR, CR, AR, SR, ALR, SLR; BASR (call).
        2 => matches!(
            insn[0],
            0x12 | 0x15 | 0x14 | 0x16 | 0x17 | 0x19 | 0x1a | 0x1b | 0x1e | 0x1f | 0x0d
        ),
        4 => {
            matches!(
                op16,
                // LTGR, CGR, CLGR, AGR, SGR, ALGR, SLGR, NGR, OGR, XGR.
                0xb902 | 0xb920 | 0xb921 | 0xb908 | 0xb909 | 0xb90a | 0xb90b | 0xb980 | 0xb981
                    | 0xb982
                    // ARK, SRK, ALRK, SLRK, AGRK, SGRK, ALGRK, SLGRK, NRK,
                    // ORK, XRK, NGRK, OGRK, XGRK.
                    | 0xb9f8 | 0xb9f9 | 0xb9fa | 0xb9fb | 0xb9e8 | 0xb9e9 | 0xb9ea | 0xb9eb
                    | 0xb9f4 | 0xb9f6 | 0xb9f7 | 0xb9e4 | 0xb9e6 | 0xb9e7
                    // KEBR, CEBR, LTDBR, KDBR, CDBR.
                    | 0xb308 | 0xb309 | 0xb312 | 0xb318 | 0xb319
                    // CONVERT TO LOGICAL.
                    | 0xb39c | 0xb39d | 0xb39e | 0xb3ac | 0xb3ad | 0xb3ae
            )
                // TMLH, TMLL, TMHH, TMHL, AHI, AGHI, CHI, CGHI.
                || (insn[0] == 0xa7 && matches!(insn[1] & 0xf, 0..=3 | 0xa | 0xb | 0xe | 0xf))
                // C, CL.
                || matches!(insn[0], 0x59 | 0x55)
        }
        _ => {
            // AGFI, AFI, ALGFI, ALFI, CGFI, CFI, CLGFI, CLFI, SLGFI, SLFI.
            (insn[0] == 0xc2 && matches!(insn[1] & 0xf, 4 | 5 | 8..=0xf))
                // BRASL (call).
                || (insn[0] == 0xc0 && insn[1] & 0xf == 5)
                // CG, CLG.
                || (insn[0] == 0xe3 && matches!(insn[5], 0x20 | 0x21))
                // AHIK, AGHIK, RISBG, RNSBG, ROSBG, RXSBG.
                || (insn[0] == 0xec && matches!(insn[5], 0xd8 | 0xd9 | 0x55 | 0x54 | 0x56 | 0x57))
                // WFK, WFC.
                || (insn[0] == 0xe7 && matches!(insn[5], 0xca | 0xcb))
        }
    }
}

/// Whether the condition code set by the instruction ending at offset `at`
/// may be read: decoding on from there, a reader comes before an
/// instruction that certainly sets it. `BRAS` over inline data (Cranelift's
/// literals) is followed to its target. Anything undecided within the
/// window counts as read: reading is what makes an intercept necessary,
/// and a needless one only costs time.
fn reads_cc_after(code: &[u8], mut at: usize) -> bool {
    const WINDOW: usize = 64;
    for _ in 0..WINDOW {
        let Some(&first) = code.get(at) else {
            // The end of the code: nothing here reads it.
            return false;
        };
        let Some(insn) = code.get(at..at + length(first)) else {
            return false;
        };
        if reads_cc(insn) {
            return true;
        }
        if sets_cc(insn) {
            return false;
        }
        // BRAS R1,RI2 (`a7 r 5`): a forward branch over data.
        if insn[0] == 0xa7 && insn[1] & 0xf == 5 {
            let halfwords = i16::from_be_bytes([insn[2], insn[3]]);
            if halfwords > 2 {
                at += 2 * halfwords as usize;
                continue;
            }
        }
        at += insn.len();
    }
    true
}

/// The offsets in `code` of instructions to carry out: every halfword
/// offset is tried (see `EmuArch::intercepts`).
pub(super) fn offsets(code: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    for at in (0..code.len()).step_by(2) {
        let Some(insn) = code.get(at..at + length(code[at])) else {
            continue;
        };
        let wanted = match decode(insn) {
            Some(Insn::AddSub(_)) => reads_cc_after(code, at + insn.len()),
            Some(Insn::ToLogical(_) | Insn::RotateTest(_)) => true,
            None => false,
        };
        if wanted {
            found.push(at);
        }
    }
    found
}

/// The signed add or subtract with a storage operand `insn` is (`A`, `AY`,
/// `AG`, `S`, `SY`, `SG`), by mnemonic: QEMU 5 gets their overflow wrong
/// too, and this module does not carry them out (Cranelift never tests
/// their condition code). The immediate and sign-extending forms cannot
/// meet the wrong cases (an operand of `MIN` of the operation's width).
fn storage_add_sub(insn: &[u8]) -> Option<&'static str> {
    match insn.len() {
        4 => match insn[0] {
            0x5a => Some("a"),
            0x5b => Some("s"),
            _ => None,
        },
        6 if insn[0] == 0xe3 => match insn[5] {
            0x5a => Some("ay"),
            0x5b => Some("sy"),
            0x08 => Some("ag"),
            0x09 => Some("sg"),
            _ => None,
        },
        _ => None,
    }
}

/// The instructions in `code` (one function, decoded linearly) that QEMU 5
/// mis-executes and this module does not carry out: storage-operand signed
/// adds and subtracts whose condition code is read.
pub(super) fn mis_executed(code: &[u8]) -> Vec<&'static str> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(&first) = code.get(at)
        && let Some(insn) = code.get(at..at + length(first))
    {
        if let Some(name) = storage_add_sub(insn)
            && reads_cc_after(code, at + insn.len())
            && !found.contains(&name)
        {
            found.push(name);
        }
        at += insn.len();
    }
    found
}

// ---- carrying instructions out ----

fn gpr(core: &Core<'_>, r: u8) -> Result<u64, Error> {
    core.read_raw(RegisterS390X::R0 as i32 + i32::from(r), "gpr")
}

fn set_gpr(core: &mut Core<'_>, r: u8, value: u64) -> Result<(), Error> {
    core.write_raw(RegisterS390X::R0 as i32 + i32::from(r), "gpr", value)
}

/// Replace the low word of general register `r`.
fn set_gpr_low(core: &mut Core<'_>, r: u8, value: u32) -> Result<(), Error> {
    let high = gpr(core, r)? & 0xffff_ffff_0000_0000;
    set_gpr(core, r, high | u64::from(value))
}

const PSW_CC_SHIFT: u32 = 44;
/// PSW bit 20: the fixed-point-overflow mask.
const PSW_FIXED_OVERFLOW_MASK: u64 = 1 << (63 - 20);

fn psw_mask(core: &Core<'_>) -> Result<u64, Error> {
    core.read_raw(RegisterS390X::PSWM as i32, "psw mask")
}

fn set_cc(core: &mut Core<'_>, cc: u64) -> Result<(), Error> {
    let mask = psw_mask(core)?;
    core.write_raw(
        RegisterS390X::PSWM as i32,
        "psw mask",
        (mask & !(3 << PSW_CC_SHIFT)) | (cc << PSW_CC_SHIFT),
    )
}

/// Carry out the instruction at `pc` if it is one of this module's; the
/// next pc, or `None` to leave it to unicorn.
pub(super) fn carry_out(core: &mut Core<'_>, pc: u64) -> Result<Option<u64>, Error> {
    let mut bytes = [0u8; 6];
    core.memory().read(pc, &mut bytes[..2])?;
    let len = length(bytes[0]);
    core.memory().read(pc, &mut bytes[..len])?;
    let Some(insn) = decode(&bytes[..len]) else {
        return Ok(None);
    };
    let done = match insn {
        Insn::AddSub(op) => add_sub(core, pc, op)?,
        Insn::ToLogical(op) => to_logical(core, op)?,
        Insn::RotateTest(op) => rotate_test(core, op)?,
    };
    Ok(done.then(|| pc.wrapping_add(len as u64)))
}

/// The result of a signed add or subtract and its condition code: 0 zero,
/// 1 negative, 2 positive, 3 overflow.
fn signed_add_sub(subtract: bool, wide: bool, left: u64, right: u64) -> (u64, u64) {
    let (result, overflow, negative) = if wide {
        let (l, r) = (left as i64, right as i64);
        let (result, overflow) = if subtract {
            l.overflowing_sub(r)
        } else {
            l.overflowing_add(r)
        };
        (result as u64, overflow, result < 0)
    } else {
        let (l, r) = (left as i32, right as i32);
        let (result, overflow) = if subtract {
            l.overflowing_sub(r)
        } else {
            l.overflowing_add(r)
        };
        (u64::from(result as u32), overflow, result < 0)
    };
    let cc = match (overflow, result == 0, negative) {
        (true, _, _) => 3,
        (false, true, _) => 0,
        (false, false, true) => 1,
        (false, false, false) => 2,
    };
    (result, cc)
}

fn add_sub(core: &mut Core<'_>, pc: u64, op: AddSub) -> Result<bool, Error> {
    let left = gpr(core, op.left)?;
    let right = match op.right {
        Operand::Reg(r) => gpr(core, r)?,
        Operand::Imm(imm) => i64::from(imm) as u64,
    };
    let (result, cc) = signed_add_sub(op.subtract, op.wide, left, right);
    if cc == 3 && psw_mask(core)? & PSW_FIXED_OVERFLOW_MASK != 0 {
        return Err(Error::Machine(format!(
            "s390x: fixed-point overflow at pc {pc:#x} with the overflow interruption \
             enabled in the PSW program mask: not emulated"
        )));
    }
    if op.wide {
        set_gpr(core, op.r1, result)?;
    } else {
        set_gpr_low(core, op.r1, result as u32)?;
    }
    set_cc(core, cc)?;
    Ok(true)
}

fn rotate_test(core: &mut Core<'_>, op: RotateTest) -> Result<bool, Error> {
    let cc = rotate_then_test(
        op.op,
        gpr(core, op.r1)?,
        gpr(core, op.r2)?,
        op.start,
        op.end,
        op.rotate,
    );
    set_cc(core, cc)?;
    Ok(true)
}

/// The condition code of a test-only ROTATE THEN AND/OR/XOR SELECTED BITS:
/// the second operand rotated left by `rotate` is combined with the first
/// in the bit positions `start` to `end` (bit 0 leftmost, wrapping around
/// after 63); 0 when those bits of the result are all zero, else 1.
fn rotate_then_test(op: BitOp, first: u64, second: u64, start: u32, end: u32, rotate: u32) -> u64 {
    let rotated = second.rotate_left(rotate);
    let combined = match op {
        BitOp::And => first & rotated,
        BitOp::Or => first | rotated,
        BitOp::Xor => first ^ rotated,
    };
    u64::from(combined & selected_bits(start, end) != 0)
}

/// The mask of bit positions `start` to `end` (bit 0 leftmost), wrapping.
fn selected_bits(start: u32, end: u32) -> u64 {
    let from_start = u64::MAX >> start;
    let through_end = u64::MAX << (63 - end);
    if start <= end {
        from_start & through_end
    } else {
        from_start | through_end
    }
}

/// FPC: IEEE invalid-operation and inexact masks (byte 0) and flags
/// (byte 1), and the BFP rounding mode (bits 29–31).
const FPC_MASK_INVALID: u32 = 0x8000_0000;
const FPC_MASK_INEXACT: u32 = 0x0800_0000;
const FPC_FLAG_INVALID: u32 = 0x0080_0000;
const FPC_FLAG_INEXACT: u32 = 0x0008_0000;
const FPC_ROUNDING: u32 = 0x7;

/// A rounding method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rounding {
    NearestEven,
    NearestAway,
    TowardZero,
    Up,
    Down,
    /// Prepare for shorter precision: toward zero, then the rightmost bit
    /// set if the result is inexact.
    Shorter,
}

impl Rounding {
    /// The method of a rounding-method field; 0 defers to the FPC's mode.
    fn from_field(mode: u8, fpc: u32) -> Option<Rounding> {
        Some(match mode {
            0 => match fpc & FPC_ROUNDING {
                0 => Rounding::NearestEven,
                1 => Rounding::TowardZero,
                2 => Rounding::Up,
                3 => Rounding::Down,
                7 => Rounding::Shorter,
                _ => return None,
            },
            1 => Rounding::NearestAway,
            3 => Rounding::Shorter,
            4 => Rounding::NearestEven,
            5 => Rounding::TowardZero,
            6 => Rounding::Up,
            7 => Rounding::Down,
            _ => return None,
        })
    }
}

/// The outcome of a conversion to logical.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Converted {
    value: u64,
    /// IEEE invalid operation: a NaN, or out of the result's range.
    invalid: bool,
    /// IEEE inexact (never together with invalid).
    inexact: bool,
    /// The condition code of the scalar forms.
    cc: u64,
}

/// CONVERT TO LOGICAL of the BFP number `bits` (the extended format's
/// 128 bits, the others right-aligned) to an unsigned integer of
/// `result_bits`: NaN gives 0, a value above the range the largest
/// integer, one whose rounded value is below zero 0, all invalid (condition
/// code 3); otherwise the rounded value with condition code 0 (the source
/// is zero), 1 (negative) or 2 (positive).
fn convert_to_logical(
    format: Format,
    bits: u128,
    result_bits: u32,
    rounding: Rounding,
) -> Converted {
    let (exponent_bits, fraction_bits, width) = match format {
        Format::Short => (8, 23, 32),
        Format::Long => (11, 52, 64),
        Format::Extended => (15, 112, 128),
    };
    let negative = bits >> (width - 1) & 1 != 0;
    let biased = (bits >> fraction_bits) & ((1 << exponent_bits) - 1);
    let fraction = bits & ((1 << fraction_bits) - 1);
    let max_exponent = (1 << exponent_bits) - 1;
    let max = if result_bits == 64 {
        u64::MAX
    } else {
        (1u64 << result_bits) - 1
    };
    let invalid = |value| Converted {
        value,
        invalid: true,
        inexact: false,
        cc: 3,
    };
    if biased == max_exponent {
        // NaN, or an infinity.
        return if fraction != 0 || negative {
            invalid(0)
        } else {
            invalid(max)
        };
    }
    if biased == 0 && fraction == 0 {
        return Converted {
            value: 0,
            invalid: false,
            inexact: false,
            cc: 0,
        };
    }
    // value = significand * 2^exponent.
    let (significand, exponent) = if biased == 0 {
        (fraction, 1 - (max_exponent as i32 >> 1) - fraction_bits)
    } else {
        (
            fraction | 1 << fraction_bits,
            biased as i32 - (max_exponent as i32 >> 1) - fraction_bits,
        )
    };
    // The integer part, and where the discarded fraction lies.
    let (integer, remainder) = if exponent >= 0 {
        if exponent >= 128 || significand.leading_zeros() < exponent as u32 {
            // Far above any result.
            return if negative { invalid(0) } else { invalid(max) };
        }
        (significand << exponent, Remainder::Zero)
    } else {
        let shift = exponent.unsigned_abs();
        if shift >= 128 {
            // significand < 2^113 <= 2^(shift - 1): below one half.
            (0, Remainder::BelowHalf)
        } else {
            let kept = significand >> shift;
            let rest = significand & ((1u128 << shift) - 1);
            let half = 1u128 << (shift - 1);
            let remainder = if rest == 0 {
                Remainder::Zero
            } else {
                match rest.cmp(&half) {
                    std::cmp::Ordering::Less => Remainder::BelowHalf,
                    std::cmp::Ordering::Equal => Remainder::Half,
                    std::cmp::Ordering::Greater => Remainder::AboveHalf,
                }
            };
            (kept, remainder)
        }
    };
    let inexact = remainder != Remainder::Zero;
    let increment = match rounding {
        Rounding::TowardZero | Rounding::Shorter => false,
        Rounding::NearestEven => {
            remainder == Remainder::AboveHalf || (remainder == Remainder::Half && integer & 1 != 0)
        }
        Rounding::NearestAway => matches!(remainder, Remainder::Half | Remainder::AboveHalf),
        Rounding::Up => inexact && !negative,
        Rounding::Down => inexact && negative,
    };
    let mut magnitude = integer + u128::from(increment);
    if rounding == Rounding::Shorter && inexact {
        magnitude |= 1;
    }
    let cc = if negative { 1 } else { 2 };
    if negative {
        return if magnitude == 0 {
            Converted {
                value: 0,
                invalid: false,
                inexact,
                cc,
            }
        } else {
            invalid(0)
        };
    }
    if magnitude > u128::from(max) {
        return invalid(max);
    }
    Converted {
        value: magnitude as u64,
        invalid: false,
        inexact,
        cc,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Remainder {
    Zero,
    BelowHalf,
    Half,
    AboveHalf,
}

/// Floating-point register `r` (the leftmost doubleword of vector register
/// `r`).
fn fpr(core: &Core<'_>, r: u8) -> Result<u64, Error> {
    core.read_raw(RegisterS390X::F0 as i32 + i32::from(r), "fpr")
}

fn to_logical(core: &mut Core<'_>, op: ToLogical) -> Result<bool, Error> {
    let fpc = core.read_raw(RegisterS390X::FPC as i32, "fpc")? as u32;
    let Some(rounding) = Rounding::from_field(op.mode, fpc) else {
        // An invalid FPC rounding mode: unicorn raises the exception.
        return Ok(false);
    };
    let suppress_inexact = op.m4 & 4 != 0;
    // The sources, one per result element.
    let sources: Vec<u128> = match op.target {
        Target::Gpr { r2, .. } => vec![match op.source {
            Format::Short => u128::from(fpr(core, r2)? >> 32),
            Format::Long => u128::from(fpr(core, r2)?),
            Format::Extended => u128::from(fpr(core, r2)?) << 64 | u128::from(fpr(core, r2 + 2)?),
        }],
        Target::Vector { v2, .. } => {
            let v = read_vr(core, v2)?;
            if op.m4 & 8 != 0 {
                vec![v >> 64]
            } else {
                vec![v >> 64, v & u128::from(u64::MAX)]
            }
        }
    };
    let results: Vec<Converted> = sources
        .iter()
        .map(|&bits| convert_to_logical(op.source, bits, op.bits, rounding))
        .collect();
    let invalid = results.iter().any(|r| r.invalid);
    let inexact = !suppress_inexact && results.iter().any(|r| r.inexact);
    if (invalid && fpc & FPC_MASK_INVALID != 0) || (inexact && fpc & FPC_MASK_INEXACT != 0) {
        // An enabled IEEE trap: unicorn takes it.
        return Ok(false);
    }
    match op.target {
        Target::Gpr { r1, .. } => {
            let result = results[0];
            if op.bits == 64 {
                set_gpr(core, r1, result.value)?;
            } else {
                set_gpr_low(core, r1, result.value as u32)?;
            }
            set_cc(core, result.cc)?;
        }
        Target::Vector { v1, .. } => {
            // A single-element form's other element is unpredictable:
            // zero, as later QEMUs do.
            let high = u128::from(results[0].value) << 64;
            let low = results.get(1).map_or(0, |r| u128::from(r.value));
            write_vr(core, v1, high | low)?;
        }
    }
    let flags =
        if invalid { FPC_FLAG_INVALID } else { 0 } | if inexact { FPC_FLAG_INEXACT } else { 0 };
    if flags != 0 {
        core.write_raw(RegisterS390X::FPC as i32, "fpc", u64::from(fpc | flags))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_come_from_the_opcode() {
        assert_eq!(length(0x1a), 2);
        assert_eq!(length(0x5a), 4);
        assert_eq!(length(0xb9), 4);
        assert_eq!(length(0xc2), 6);
        assert_eq!(length(0xec), 6);
    }

    #[test]
    fn decodes_each_family() {
        // agrk %r2,%r3,%r4
        assert_eq!(
            decode(&[0xb9, 0xe8, 0x40, 0x23]),
            Some(Insn::AddSub(AddSub {
                subtract: false,
                wide: true,
                r1: 2,
                left: 3,
                right: Operand::Reg(4),
            }))
        );
        // sr %r1,%r5
        assert_eq!(
            decode(&[0x1b, 0x15]),
            Some(Insn::AddSub(AddSub {
                subtract: true,
                wide: false,
                r1: 1,
                left: 1,
                right: Operand::Reg(5),
            }))
        );
        // wclgdb %v16,%f0,0,5 (RXB bit for V1)
        let Some(Insn::ToLogical(op)) = decode(&[0xe7, 0x00, 0x00, 0x58, 0x38, 0xc0]) else {
            panic!("not decoded");
        };
        assert_eq!(op.target, Target::Vector { v1: 16, v2: 0 });
        assert_eq!((op.mode, op.m4), (5, 8));
        // vclfeb (word elements, z15) is not this module's.
        assert_eq!(decode(&[0xe7, 0x00, 0x00, 0x58, 0x20, 0xc0]), None);
        // clgxbr with an odd pair or rounding mode 2 is not either.
        assert_eq!(decode(&[0xb3, 0xae, 0x50, 0x12]), None);
        assert_eq!(decode(&[0xb3, 0xad, 0x20, 0x10]), None);
        // rxsbg without the test-only bit is right in QEMU 5.
        assert_eq!(decode(&[0xec, 0x12, 0x20, 0x2f, 0x00, 0x57]), None);
        assert!(decode(&[0xec, 0x12, 0xa0, 0x2f, 0x00, 0x57]).is_some());
    }

    #[test]
    fn only_adds_whose_condition_code_is_read_are_intercepted() {
        // agrk %r2,%r3,%r4 ; lghi %r2,0 ; lochio %r2,1
        let read = [
            0xb9, 0xe8, 0x40, 0x23, 0xa7, 0x29, 0x00, 0x00, 0xec, 0x21, 0x00, 0x01, 0x00, 0x42,
        ];
        assert_eq!(offsets(&read), vec![0]);
        // agrk ; cgr %r2,%r3 ; jne
        let replaced = [
            0xb9, 0xe8, 0x40, 0x23, 0xb9, 0x20, 0x00, 0x23, 0xa7, 0x74, 0x00, 0x04,
        ];
        assert_eq!(offsets(&replaced), Vec::<usize>::new());
        // agrk ; br %r14: nothing reads it.
        assert_eq!(
            offsets(&[0xb9, 0xe8, 0x40, 0x23, 0x07, 0xfe]),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn selected_bits_wrap() {
        assert_eq!(selected_bits(0, 63), u64::MAX);
        assert_eq!(selected_bits(32, 47), 0x0000_0000_ffff_0000);
        assert_eq!(selected_bits(60, 3), 0xf000_0000_0000_000f);
    }

    #[test]
    fn conversion_edges() {
        let long = |x: f64| u128::from(x.to_bits());
        let c = |x: f64, r| convert_to_logical(Format::Long, long(x), 64, r);
        assert_eq!(c(f64::NAN, Rounding::TowardZero).value, 0);
        assert_eq!(c(f64::INFINITY, Rounding::TowardZero).value, u64::MAX);
        assert_eq!(c(2.5, Rounding::NearestEven).value, 2);
        assert_eq!(c(2.5, Rounding::NearestAway).value, 3);
        assert_eq!(c(2.25, Rounding::Up).value, 3);
        assert_eq!(c(2.0, Rounding::Shorter).value, 2);
        assert_eq!(c(2.25, Rounding::Shorter).value, 3);
        let small = c(-0.5, Rounding::TowardZero);
        assert_eq!((small.value, small.invalid, small.cc), (0, false, 1));
        assert!(c(-0.5, Rounding::Down).invalid);
        assert!(c(18446744073709551616.0, Rounding::TowardZero).invalid);
        let big = c(18446744073709549568.0, Rounding::TowardZero);
        assert_eq!((big.value, big.invalid), (18446744073709549568, false));
        // Extended: 2^64 - 1 exactly, and 2^64 - 0.5 rounding up.
        let ext = |hi: u64, lo: u64| u128::from(hi) << 64 | u128::from(lo);
        let max = convert_to_logical(
            Format::Extended,
            ext(0x403e_ffff_ffff_ffff, 0xfffe_0000_0000_0000),
            64,
            Rounding::TowardZero,
        );
        assert_eq!(
            (max.value, max.invalid, max.inexact),
            (u64::MAX, false, false)
        );
        let over = convert_to_logical(
            Format::Extended,
            ext(0x403e_ffff_ffff_ffff, 0xffff_0000_0000_0000),
            64,
            Rounding::NearestEven,
        );
        assert!(over.invalid);
        // The smallest subnormal is inexact, not invalid, toward zero.
        let tiny = convert_to_logical(Format::Short, 1, 32, Rounding::TowardZero);
        assert_eq!((tiny.value, tiny.inexact, tiny.cc), (0, true, 2));
    }
}
