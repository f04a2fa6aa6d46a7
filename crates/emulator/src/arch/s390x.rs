//! s390x (z/Architecture, big-endian) in unicorn-engine.
//!
//! * CPU model: `gen15a` (z15), the newest machine unicorn 2.1.5 defines
//!   (there is no z16). Cranelift's default target is z14 (arch12), which
//!   z15 includes; `has_mie2`/`has_vxrs_ext2` code needs z15.
//! * Set-up: CR0 bits 45 and 46 (in the 64-bit register: 0x40000, AFP
//!   registers, and 0x20000, vector facility), i.e. `CR0 |= 0x60000`; without
//!   them `std %f8` in a prologue raises a data exception.
//! * Set-up, too: the PSW's extended and basic addressing-mode bits
//!   (`PSWM |= 0x1_8000_0000`); unicorn resets the PSW mask to zero, i.e.
//!   24-bit addressing.
//! * Calls leave the return address in r14; the caller reserves the 160-byte
//!   register save area above r15 for the callee and stores the back chain
//!   (zero for the outermost frame) at `0(%r15)`. A host function returns
//!   with `pc = r14`.

use cranelift_exn::Error;
use cranelift_exn::isa::{Arch, Reg, RegClass};
use unicorn_engine::unicorn_const::{Arch as UcArch, Mode};
use unicorn_engine::{RegisterS390X, S390xCpuModel};

use super::{CpuModel, EmuArch, RegSlot};
use crate::core::Core;

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

impl EmuArch for S390x {
    fn arch(&self) -> Arch {
        Arch::S390x
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

    fn setup(&self, core: &mut Core<'_>) -> Result<(), Error> {
        let id = RegisterS390X::CR0 as i32;
        let cr0 = core.read_raw(id, "cr0")?;
        core.write_raw(id, "cr0", cr0 | CR0_AFP_VECTOR)?;
        let id = RegisterS390X::PSWM as i32;
        let mask = core.read_raw(id, "psw mask")?;
        core.write_raw(id, "psw mask", mask | PSW_64BIT_ADDRESSING)
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

    fn trap_fill(&self) -> &'static [u8] {
        &ILLEGAL
    }

    fn enter(
        &self,
        core: &mut Core<'_>,
        stack_top: u64,
        return_address: u64,
    ) -> Result<(), Error> {
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
