//! RISC-V 64 in unicorn-engine.
//!
//! * CPU model: `any` — RV64IMAFDC with privileged spec 1.11, every extension
//!   QEMU 5's TCG implements (Cranelift emits RV64GC by default; the
//!   bit-manipulation and vector extensions are newer than QEMU 5 and so
//!   unavailable on every model).
//! * Set-up: `mstatus.FS = Dirty` (0x6000); with `FS = Off` the first
//!   floating-point instruction raises an illegal-instruction exception.
//! * A CPU exception (illegal instruction, ...) stops unicorn with the pc 4
//!   bytes past the faulting instruction; the machine reports and restores
//!   the faulting pc.
//! * Calls leave the return address in `ra` (x1); a host function returns
//!   with `pc = ra`.

use cranelift_exn::Error;
use cranelift_exn::isa::{Arch, Reg, RegClass};
use unicorn_engine::unicorn_const::{Arch as UcArch, Mode};
use unicorn_engine::{RegisterRISCV, Riscv64CpuModel};

use super::{CpuModel, EmuArch, MissingFlag, RegSlot};
use crate::core::Core;

/// RISC-V 64.
pub(crate) struct Riscv64;

/// `mstatus.FS` = 0b11 (Dirty): the FPU is on.
const MSTATUS_FS: u64 = 0x6000;

/// An all-ones word, a reserved (illegal) encoding: the host page is filled
/// with it. Not the all-zero `c.unimp`: unicorn 2.1.5 never runs code hooks
/// on a zero halfword, so the host-function hook would not fire.
const ILLEGAL: [u8; 4] = [0xff; 4];

impl EmuArch for Riscv64 {
    fn missing_flags(&self) -> &'static [MissingFlag] {
        MISSING_FLAGS
    }

    fn arch(&self) -> Arch {
        Arch::Riscv64
    }

    fn unicorn_mode(&self) -> (UcArch, Mode) {
        (UcArch::RISCV, Mode::RISCV64)
    }

    fn cpu_model(&self) -> CpuModel {
        CpuModel {
            id: Riscv64CpuModel::ANY as i32,
            name: "any",
        }
    }

    fn setup(&self, core: &mut Core<'_>) -> Result<(), Error> {
        let id = RegisterRISCV::MSTATUS as i32;
        let mstatus = core.read_raw(id, "mstatus")?;
        core.write_raw(id, "mstatus", mstatus | MSTATUS_FS)
    }

    fn reg_slot(&self, reg: Reg) -> Option<RegSlot> {
        let hw = i32::from(reg.hw);
        match (reg.class, reg.hw) {
            (RegClass::Int, 0..=31) => Some(RegSlot::Word(RegisterRISCV::X0 as i32 + hw)),
            (RegClass::Float, 0..=31) => Some(RegSlot::Word(RegisterRISCV::F0 as i32 + hw)),
            _ => None,
        }
    }

    fn pc_id(&self) -> i32 {
        RegisterRISCV::PC as i32
    }

    fn exception_pc(&self, reported: u64) -> u64 {
        // unicorn's exception path advances the RISC-V pc by 4 before it
        // stops, whatever the instruction's length.
        reported.wrapping_sub(4)
    }

    fn trap_fill(&self) -> &'static [u8] {
        &ILLEGAL
    }

    fn enter(&self, core: &mut Core<'_>, stack_top: u64, return_address: u64) -> Result<(), Error> {
        // LP64D: sp 16-byte aligned at the call, return address in ra.
        super::enter_with_link_register(core, Arch::Riscv64, stack_top, 0, return_address).map(drop)
    }

    fn return_from_host(&self, core: &mut Core<'_>) -> Result<(), Error> {
        super::return_through_link_register(core, Arch::Riscv64)
    }
}

/// RISC-V 64 on the `any` model (RV64IMAFDC): QEMU 5.0 predates the ratified
/// vector, bit-manipulation, half-precision, Zfa, Zicond and Zcb extensions.
/// Their instructions raise illegal-instruction exceptions, except Zcb's,
/// which QEMU 5.0 decodes as something else (wrong results, no fault). The
/// CPU lacks Zbc too, but Cranelift 0.135.8 emits no Zbc instruction, so
/// `has_zbc` code runs; Zca/Zcd (`has_c`), M, A, F, D, Zicsr and Zifencei
/// run.
const MISSING_FLAGS: &[MissingFlag] = &[
    MissingFlag::new("has_v", "vector"),
    MissingFlag::new("has_zvfh", "vector half-precision"),
    MissingFlag::new("has_zvbb", "vector bit-manipulation"),
    MissingFlag::new("has_zfa", "additional floating-point"),
    MissingFlag::new("has_zfhmin", "minimal half-precision"),
    MissingFlag::new("has_zfh", "half-precision"),
    MissingFlag::new("has_zcb", "extra compressed"),
    MissingFlag::new("has_zbkb", "bit-manipulation for cryptography"),
    MissingFlag::new("has_zba", "address generation"),
    MissingFlag::new("has_zbb", "basic bit-manipulation"),
    MissingFlag::new("has_zbs", "single-bit"),
    MissingFlag::new("has_zicond", "integer conditional operations"),
];
