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

use cranelift_exn::Error;
use cranelift_exn::isa::{Arch, Reg, RegClass};
use unicorn_engine::unicorn_const::{Arch as UcArch, Mode};
use unicorn_engine::{Arm64CpuModel, RegisterARM64};

use super::{CpuModel, EmuArch, RegSlot};
use crate::core::Core;

/// AArch64.
pub(crate) struct Aarch64;

/// `CPACR_EL1.FPEN`: no FP/SIMD trapping at EL0 or EL1.
const CPACR_FPEN: u64 = 0x30_0000;

/// `udf #0xc0de`: the host page is filled with it. (Not the all-zero `udf
/// #0`: on riscv64 and s390x unicorn 2.1.5 runs no code hooks on zero
/// instruction bytes, so no architecture relies on them.)
const UDF: [u8; 4] = [0xde, 0xc0, 0x00, 0x00];

impl EmuArch for Aarch64 {
    fn arch(&self) -> Arch {
        Arch::Aarch64
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

    fn trap_fill(&self) -> &'static [u8] {
        &UDF
    }

    fn enter(&self, core: &mut Core<'_>, stack_top: u64, return_address: u64) -> Result<(), Error> {
        // AAPCS64: sp 16-byte aligned at the call, return address in x30.
        super::enter_with_link_register(core, Arch::Aarch64, stack_top, 0, return_address).map(drop)
    }

    fn return_from_host(&self, core: &mut Core<'_>) -> Result<(), Error> {
        super::return_through_link_register(core, Arch::Aarch64)
    }
}
