//! s390x (z/Architecture, big-endian) in unicorn-engine.
//!
//! * CPU model: `gen15a` (z15), the newest machine unicorn 2.1.5 defines
//!   (there is no z16), whose facility list admits every instruction QEMU
//!   5.0's TCG decodes. Cranelift's default target is z14 (arch12). Code built
//!   with the z15 flags (`has_mie3`, `has_vxrs_ext2`) will not run: TCG of
//!   that vintage implements neither facility (e.g. no `SELGR`, `VLBR`).
//! * Set-up: CR0 bits 45 and 46 (in the 64-bit register: 0x40000, AFP
//!   registers, and 0x20000, vector facility), i.e. `CR0 |= 0x60000`; without
//!   them `std %f8` in a prologue raises a data exception.
//! * Set-up, too: the PSW's extended and basic addressing-mode bits
//!   (`PSWM |= 0x1_8000_0000`); unicorn resets the PSW mask to zero, i.e.
//!   24-bit addressing.
//! * unicorn's virtual TLB (identity mapping): through the s390x MMU's
//!   real-address path, an unmapped access is an addressing exception with no
//!   address reported, instruction fetch needs write permission, and code
//!   hooks do not run on undefined instructions.
//! * z14 instructions that QEMU 5's TCG lacks but Cranelift's default (z14)
//!   target emits are carried out in Rust from an interrupt hook: see
//!   [`missing`].
//! * Instructions QEMU 5 executes without a fault but wrongly (signed
//!   add/subtract whose overflow condition code is read, conversions to
//!   logical of a NaN, test-only `rxsbg`/`rosbg`/`rnsbg`) never reach that
//!   hook: they are found when code is installed and carried out from a code
//!   hook on each of their addresses, see [`intercept`]. The storage forms
//!   of signed add/subtract are not (Cranelift never tests their overflow);
//!   `capabilities::unsupported_code` reports them.
//! * Faults are reported at the faulting instruction's address. Note that
//!   Cranelift's trap table records an s390x trap at the *last byte* of its
//!   2-byte trap instruction (the hardware PSW address after the program
//!   check, minus one), i.e. at the reported pc + 1.
//! * Calls leave the return address in r14; the caller reserves the 160-byte
//!   register save area above r15 for the callee and stores the back chain
//!   (zero for the outermost frame) at `0(%r15)`. A host function returns
//!   with `pc = r14`.

use cranelift_exn::Error;
use cranelift_exn::isa::{Arch, Reg, RegClass};
use unicorn_engine::unicorn_const::{Arch as UcArch, Mode};
use unicorn_engine::{RegisterS390X, S390xCpuModel};

use super::{CpuModel, EmuArch, MissingFlag, RegSlot, Registers};
use crate::core::Core;

mod intercept;
mod vector;

/// s390x.
pub(crate) struct S390x;

/// CR0: additional-floating-point-register control (0x40000) and vector
/// enablement control (0x20000).
const CR0_AFP_VECTOR: u64 = 0x6_0000;

/// PSW mask: extended (0x1_0000_0000) and basic (0x8000_0000) addressing
/// mode bits, i.e. 64-bit addressing. unicorn starts with a zero mask —
/// 24-bit mode, where every data address is wrapped to 16 MiB.
const PSW_64BIT_ADDRESSING: u64 = 0x1_8000_0000;

/// The register save area a caller provides above its stack pointer.
const REGISTER_SAVE_AREA: u64 = 160;

/// `0x0100`: opcode 0x01 with an unassigned second byte, an operation
/// exception. Not the all-zero halfword: unicorn 2.1.5 never runs code hooks
/// on it, so the host-function hook would not fire.
const ILLEGAL: [u8; 2] = [0x01, 0x00];

impl Registers for S390x {
    fn arch(&self) -> Arch {
        Arch::S390x
    }

    fn reg_slot(&self, reg: Reg) -> Option<RegSlot> {
        let hw = i32::from(reg.hw);
        match (reg.class, reg.hw) {
            (RegClass::Int, 0..=15) => Some(RegSlot::Word(RegisterS390X::R0 as i32 + hw)),
            // The FPRs are the leftmost doublewords of v0–v15.
            (RegClass::Float, 0..=15) => Some(RegSlot::Word(RegisterS390X::F0 as i32 + hw)),
            _ => None,
        }
    }

    fn pc_id(&self) -> i32 {
        RegisterS390X::PC as i32
    }
}

impl EmuArch for S390x {
    fn missing_flags(&self) -> &'static [MissingFlag] {
        MISSING_FLAGS
    }

    fn mis_executed(&self, code: &[u8]) -> Option<String> {
        let found = intercept::mis_executed(code);
        (!found.is_empty()).then(|| {
            let names: Vec<String> = found
                .iter()
                .map(|name| format!("the overflow condition code of {name}"))
                .collect();
            format!(
                "emulated s390x CPU mis-executes {} (QEMU 5 reports no overflow for \
                 MIN + MIN and 0 - MIN)",
                names.join(", ")
            )
        })
    }

    fn unicorn_mode(&self) -> (UcArch, Mode) {
        (UcArch::S390X, Mode::BIG_ENDIAN)
    }

    fn cpu_model(&self) -> CpuModel {
        CpuModel {
            id: S390xCpuModel::GEN15A as i32,
            name: "gen15a (z15)",
        }
    }

    fn virtual_tlb(&self) -> bool {
        true
    }

    fn setup(&self, core: &mut Core<'_>) -> Result<(), Error> {
        let id = RegisterS390X::CR0 as i32;
        let cr0 = core.read_raw(id, "cr0")?;
        core.write_raw(id, "cr0", cr0 | CR0_AFP_VECTOR)?;
        let id = RegisterS390X::PSWM as i32;
        let mask = core.read_raw(id, "psw mask")?;
        core.write_raw(id, "psw mask", mask | PSW_64BIT_ADDRESSING)
    }

    fn emulates_missing_instructions(&self) -> bool {
        true
    }

    fn emulate_missing(&self, core: &mut Core<'_>, pc: u64) -> Result<Option<u64>, Error> {
        missing::emulate(core, pc)
    }

    fn intercepts(&self, code: &[u8]) -> Vec<usize> {
        intercept::offsets(code)
    }

    fn carry_out(
        &self,
        core: &mut Core<'_>,
        pc: u64,
        _writable: &dyn Fn(u64, u64) -> bool,
    ) -> Result<Option<u64>, Error> {
        intercept::carry_out(core, pc)
    }

    fn trap_fill(&self) -> &'static [u8] {
        &ILLEGAL
    }

    fn enter(&self, core: &mut Core<'_>, stack_top: u64, return_address: u64) -> Result<(), Error> {
        let sp = super::enter_with_link_register(
            core,
            Arch::S390x,
            stack_top,
            REGISTER_SAVE_AREA,
            return_address,
        )?;
        // The outermost frame's back chain is zero.
        core.write_u64(sp, 0)
    }

    fn return_from_host(&self, core: &mut Core<'_>) -> Result<(), Error> {
        super::return_through_link_register(core, Arch::S390x)
    }
}

/// Instructions of the z14 facilities that unicorn 2.1.5 (QEMU 5.0 TCG) does
/// not implement, carried out here when they raise an operation or
/// specification exception.
///
/// * Miscellaneous-instruction-extensions facility 2: `MSRKC` and `MSGRKC`
///   (Cranelift's `imul` of registers), `MGRK` (`smulhi`).
/// * Vector instructions (`E7` opcodes): short-BFP arithmetic, rounding,
///   comparisons, `VFMIN`/`VFMAX`, `VBPERM`, `VPOPCT` of wide elements — see
///   [`super::vector`], which lists them with its limits.
///
/// Anything else is reported as the CPU exception it is.
pub(crate) mod missing {
    use cranelift_exn::Error;
    use cranelift_exn::memory::Memory;
    use unicorn_engine::RegisterS390X;

    use crate::core::Core;

    /// Carry out the instruction at `pc` if it is one of this module's;
    /// returns the next pc.
    pub(crate) fn emulate(core: &mut Core<'_>, pc: u64) -> Result<Option<u64>, Error> {
        let mut insn = [0u8; 6];
        core.memory().read(pc, &mut insn[..2])?;
        let len = super::intercept::length(insn[0]);
        core.memory().read(pc, &mut insn[..len])?;
        let done = match len {
            4 => rrf(core, &insn)?,
            6 if insn[0] == 0xe7 => super::vector::emulate(core, &insn)?,
            _ => false,
        };
        Ok(done.then_some(pc.wrapping_add(len as u64)))
    }

    fn gpr(core: &Core<'_>, r: u8) -> Result<u64, Error> {
        core.read_raw(RegisterS390X::R0 as i32 + i32::from(r), "gpr")
    }

    fn set_gpr(core: &mut Core<'_>, r: u8, value: u64) -> Result<(), Error> {
        core.write_raw(RegisterS390X::R0 as i32 + i32::from(r), "gpr", value)
    }

    /// Set the PSW condition code.
    fn set_cc(core: &mut Core<'_>, cc: u64) -> Result<(), Error> {
        let id = RegisterS390X::PSWM as i32;
        let mask = core.read_raw(id, "psw mask")?;
        core.write_raw(id, "psw mask", (mask & !(3 << 44)) | (cc << 44))
    }

    /// The condition code of a signed arithmetic result.
    fn sign_cc(negative: bool, zero: bool, overflow: bool) -> u64 {
        match (overflow, zero, negative) {
            (true, _, _) => 3,
            (false, true, _) => 0,
            (false, false, true) => 1,
            (false, false, false) => 2,
        }
    }

    /// RRF-a multiplies: `opcode(16) r3 m4 r1 r2`.
    fn rrf(core: &mut Core<'_>, insn: &[u8; 6]) -> Result<bool, Error> {
        let opcode = u16::from_be_bytes([insn[0], insn[1]]);
        let (r3, r1, r2) = (insn[2] >> 4, insn[3] >> 4, insn[3] & 0xf);
        match opcode {
            // MSGRKC: r1 = r2 * r3 (64-bit signed), cc by result/overflow.
            0xb9ed => {
                let (a, b) = (gpr(core, r2)? as i64, gpr(core, r3)? as i64);
                let (product, overflow) = a.overflowing_mul(b);
                set_gpr(core, r1, product as u64)?;
                set_cc(core, sign_cc(product < 0, product == 0, overflow))?;
            }
            // MSRKC: low word of r1 = r2 * r3 (32-bit signed).
            0xb9fd => {
                let (a, b) = (gpr(core, r2)? as i32, gpr(core, r3)? as i32);
                let (product, overflow) = a.overflowing_mul(b);
                let high = gpr(core, r1)? & 0xffff_ffff_0000_0000;
                set_gpr(core, r1, high | u64::from(product as u32))?;
                set_cc(core, sign_cc(product < 0, product == 0, overflow))?;
            }
            // MGRK: r1:r1+1 = r2 * r3 (128-bit signed); cc unchanged.
            0xb9ec if r1 % 2 == 0 => {
                let a = i128::from(gpr(core, r2)? as i64);
                let b = i128::from(gpr(core, r3)? as i64);
                let product = (a * b) as u128;
                set_gpr(core, r1, (product >> 64) as u64)?;
                set_gpr(core, r1 + 1, product as u64)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// s390x on `gen15a`: QEMU 5.0's TCG implements neither the z15 nor the z17
/// facilities.
const MISSING_FLAGS: &[MissingFlag] = &[
    MissingFlag::new("has_mie3", "miscellaneous-instruction-extensions 3, z15"),
    MissingFlag::new("has_vxrs_ext2", "vector-enhancements 2, z15"),
    MissingFlag::new("has_mie4", "miscellaneous-instruction-extensions 4, z17"),
    MissingFlag::new("has_vxrs_ext3", "vector-enhancements 3, z17"),
];
