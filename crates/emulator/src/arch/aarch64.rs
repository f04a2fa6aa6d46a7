//! AArch64 in unicorn-engine.
//!
//! * CPU model: `max` — every feature QEMU 5's TCG implements (LSE atomics,
//!   FP16, PAuth, ...), a superset of what Cranelift emits by default.
//! * Set-up: `CPACR_EL1.FPEN = 0b11` (0x300000), FP/SIMD enabled at EL0 and
//!   EL1 (the CPU starts in EL1h with `CPACR_EL1 = 0`). unicorn 2.1.5 runs
//!   FP/SIMD code even without it (checked: the float tests pass with the
//!   write removed), but a CPACR-honouring engine would trap, so it is set.
//! * Calls leave the return address in the link register (x30); a host
//!   function returns with `pc = x30`.
//! * QEMU 5's LSE signed minimum and maximum (`LDSMAX*`, `LDSMIN*`, and the
//!   `STSMAX*`/`STSMIN*` aliases) load a narrow value zero-extended and
//!   compare it with the whole 64-bit register, i.e. unsigned. Every such
//!   instruction found when code is installed is carried out here instead,
//!   from a code hook on its address: see [`lse_signed_min_max`].

use cranelift_exn::Error;
use cranelift_exn::isa::{Arch, Reg, RegClass};
use cranelift_exn::memory::Memory;
use unicorn_engine::unicorn_const::{Arch as UcArch, Mode};
use unicorn_engine::{Arm64CpuModel, RegisterARM64};

use super::{CpuModel, EmuArch, MissingFlag, RegSlot, Registers};
use crate::core::Core;

/// AArch64.
pub(crate) struct Aarch64;

/// `CPACR_EL1.FPEN`: no FP/SIMD trapping at EL0 or EL1.
const CPACR_FPEN: u64 = 0x30_0000;

/// `udf #0xc0de`: the host page is filled with it. (Not the all-zero `udf
/// #0`: on riscv64 and s390x unicorn 2.1.5 runs no code hooks on zero
/// instruction bytes, so no architecture relies on them.)
const UDF: [u8; 4] = [0xde, 0xc0, 0x00, 0x00];

impl Registers for Aarch64 {
    fn arch(&self) -> Arch {
        Arch::Aarch64
    }

    fn reg_slot(&self, reg: Reg) -> Option<RegSlot> {
        let hw = i32::from(reg.hw);
        let id = match (reg.class, reg.hw) {
            (RegClass::Int, 0..=28) => RegisterARM64::X0 as i32 + hw,
            (RegClass::Int, 29) => RegisterARM64::X29 as i32,
            (RegClass::Int, 30) => RegisterARM64::X30 as i32,
            // Cranelift encodes the stack pointer as 31.
            (RegClass::Int, 31) => RegisterARM64::SP as i32,
            (RegClass::Float, 0..=31) => RegisterARM64::D0 as i32 + hw,
            _ => return None,
        };
        Some(RegSlot::Word(id))
    }

    fn pc_id(&self) -> i32 {
        RegisterARM64::PC as i32
    }
}

impl EmuArch for Aarch64 {
    fn missing_flags(&self) -> &'static [MissingFlag] {
        MISSING_FLAGS
    }

    fn unicorn_mode(&self) -> (UcArch, Mode) {
        (UcArch::ARM64, Mode::LITTLE_ENDIAN)
    }

    fn cpu_model(&self) -> CpuModel {
        CpuModel {
            id: Arm64CpuModel::MAX as i32,
            name: "max",
        }
    }

    fn setup(&self, core: &mut Core<'_>) -> Result<(), Error> {
        let id = RegisterARM64::CPACR_EL1 as i32;
        let cpacr = core.read_raw(id, "cpacr_el1")?;
        core.write_raw(id, "cpacr_el1", cpacr | CPACR_FPEN)
    }

    fn trap_fill(&self) -> &'static [u8] {
        &UDF
    }

    fn intercepts(&self, code: &[u8]) -> Vec<usize> {
        code.chunks_exact(4)
            .enumerate()
            .filter(|(_, word)| {
                let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                SignedMinMax::decode(word).is_some()
            })
            .map(|(i, _)| i * 4)
            .collect()
    }

    fn carry_out(
        &self,
        core: &mut Core<'_>,
        pc: u64,
        writable: &dyn Fn(u64, u64) -> bool,
    ) -> Result<Option<u64>, Error> {
        let mut word = [0u8; 4];
        core.memory().read(pc, &mut word)?;
        match SignedMinMax::decode(u32::from_le_bytes(word)) {
            Some(op) => Ok(lse_signed_min_max(core, op, writable)?.then(|| pc.wrapping_add(4))),
            None => Ok(None),
        }
    }

    fn enter(&self, core: &mut Core<'_>, stack_top: u64, return_address: u64) -> Result<(), Error> {
        // AAPCS64: sp 16-byte aligned at the call, return address in x30.
        super::enter_with_link_register(core, Arch::Aarch64, stack_top, 0, return_address).map(drop)
    }

    fn return_from_host(&self, core: &mut Core<'_>) -> Result<(), Error> {
        super::return_through_link_register(core, Arch::Aarch64)
    }
}

/// `LDSMAX`/`LDSMIN` in any size and ordering (`A`, `L`, `AL`): `size 111 0
/// 00 A R 1 Rs 0 10x 00 Rn Rt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SignedMinMax {
    /// Access size in bytes: 1, 2, 4 or 8.
    bytes: u32,
    min: bool,
    rs: u8,
    rn: u8,
    rt: u8,
}

impl SignedMinMax {
    fn decode(word: u32) -> Option<SignedMinMax> {
        // Everything but size, A, R, Rs, Rn, Rt, and opc's low bit.
        let min = match word & 0x3f20_fc00 {
            0x3820_4000 => false,
            0x3820_5000 => true,
            _ => return None,
        };
        Some(SignedMinMax {
            bytes: 1 << (word >> 30),
            min,
            rs: ((word >> 16) & 31) as u8,
            rn: ((word >> 5) & 31) as u8,
            rt: (word & 31) as u8,
        })
    }
}

/// The unicorn id of `Xn`, `n` < 31.
fn x_id(n: u8) -> i32 {
    match n {
        29 => RegisterARM64::X29 as i32,
        30 => RegisterARM64::X30 as i32,
        _ => RegisterARM64::X0 as i32 + i32::from(n),
    }
}

/// Carry out an LSE signed minimum or maximum: load the `bytes`-sized
/// value at `[Xn|SP]`, store the signed minimum or maximum of it and `Rs`,
/// and put the loaded value, zero-extended, in `Rt` (register 31 is the
/// zero register for `Rs` and `Rt`). The acquire/release bits only order
/// memory, and a single emulated CPU has nothing to order against.
/// `false` (leave it to unicorn, which faults as it should) when the
/// address is misaligned — LSE atomics require alignment — or the memory is
/// unmapped or not writable.
fn lse_signed_min_max(
    core: &mut Core<'_>,
    op: SignedMinMax,
    writable: &dyn Fn(u64, u64) -> bool,
) -> Result<bool, Error> {
    let address = if op.rn == 31 {
        core.read_raw(RegisterARM64::SP as i32, "sp")?
    } else {
        core.read_raw(x_id(op.rn), "x")?
    };
    let len = u64::from(op.bytes);
    if !address.is_multiple_of(len) || !writable(address, len) {
        return Ok(false);
    }
    let mut old = [0u8; 8];
    if core
        .memory()
        .read(address, &mut old[..op.bytes as usize])
        .is_err()
    {
        return Ok(false);
    }
    let old = u64::from_le_bytes(old);
    let source = if op.rs == 31 {
        0
    } else {
        core.read_raw(x_id(op.rs), "x")?
    };
    let new = signed_min_max(op.min, op.bytes * 8, old, source);
    core.memory()
        .write(address, &new.to_le_bytes()[..op.bytes as usize])?;
    if op.rt != 31 {
        core.write_raw(x_id(op.rt), "x", old)?;
    }
    Ok(true)
}

/// The signed minimum or maximum of the low `bits` of `a` and `b`,
/// zero-extended.
fn signed_min_max(min: bool, bits: u32, a: u64, b: u64) -> u64 {
    let shift = 64 - bits;
    let (x, y) = (
        ((a << shift) as i64) >> shift,
        ((b << shift) as i64) >> shift,
    );
    let pick = if min { x.min(y) } else { x.max(y) };
    (pick as u64) & (u64::MAX >> shift)
}

/// AArch64 on the `max` model of QEMU 5.0: no FEAT_I8MM (`usdot` is
/// undefined). LSE (`has_lse`) runs: QEMU 5's signed minimum/maximum of
/// narrow values (`ldsmax`/`ldsmin` on 8-, 16- and 32-bit values) compare
/// unsigned, but the emulator carries those instructions out itself (see
/// `src/arch/aarch64.rs`), and every other LSE operation is right. FP16,
/// DotProd, PAuth (`sign_return_address*`, `has_pauth`), BTI and CSDB run
/// correctly.
const MISSING_FLAGS: &[MissingFlag] = &[MissingFlag::new("has_i8mm", "FEAT_I8MM")];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_size_and_ordering() {
        // ldsmaxalb w1, w2, [x3]; ldsminlh w1, w2, [sp]; ldsmaxa x4, x5, [x6];
        // stsminl w7, [x8] (Rt = wzr).
        let cases = [
            (0x38e1_4062, 1, false, 1, 3, 2),
            (0x7861_53e2, 2, true, 1, 31, 2),
            (0xf8a4_40c5, 8, false, 4, 6, 5),
            (0xb867_511f, 4, true, 7, 8, 31),
        ];
        for (word, bytes, min, rs, rn, rt) in cases {
            assert_eq!(
                SignedMinMax::decode(word),
                Some(SignedMinMax {
                    bytes,
                    min,
                    rs,
                    rn,
                    rt
                }),
                "{word:#x}"
            );
        }
        // ldumax, ldadd and swp are right in unicorn.
        for word in [0xb8e1_6062u32, 0xb8e1_0062, 0xb8e1_8062] {
            assert_eq!(SignedMinMax::decode(word), None, "{word:#x}");
        }
    }

    #[test]
    fn narrow_values_compare_signed() {
        assert_eq!(signed_min_max(false, 8, 0xff, 0x01), 0x01);
        assert_eq!(signed_min_max(true, 8, 0xff, 0x01), 0xff);
        assert_eq!(signed_min_max(true, 16, 0x8000, 0x7fff), 0x8000);
        assert_eq!(signed_min_max(false, 32, 0xffff_ffff, 0x1_0000_0001), 1);
        assert_eq!(signed_min_max(true, 64, 1, u64::MAX), u64::MAX);
    }
}
