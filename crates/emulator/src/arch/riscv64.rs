//! RISC-V 64 in unicorn-engine.
//!
//! * CPU model: `any` — RV64IMAFDC with privileged spec 1.11, every extension
//!   QEMU 5's TCG implements (Cranelift emits RV64GC by default; the
//!   bit-manipulation and vector extensions are newer than QEMU 5 and so
//!   unavailable on every model).
//! * The 32-bit instructions of Zba, Zbb, Zbs, Zbkb and Zicond raise an
//!   illegal-instruction exception in QEMU 5; they are carried out in Rust
//!   from the interrupt hook, see [`bitmanip`]. Anything else that raises
//!   an exception (Cranelift's `trap`, the all-zero word, reserved
//!   encodings) is reported unchanged.
//! * The 16-bit Zcb instructions are run by QEMU 5 as other instructions,
//!   silently (`c.mul` leaves rd alone, `c.lbu` loads nothing, ...): every
//!   halfword of installed code that decodes as one ([`zcb::offsets`]) gets
//!   a code hook (`EmuArch::intercepts`), which carries it out with the
//!   library's Zcb semantics ([`zcb::Zcb::execute`], the same the QEMU
//!   machine uses) and moves the pc past it (`EmuArch::carry_out`). A match
//!   inside a 32-bit instruction or in data costs only an idle hook:
//!   unicorn runs code hooks at instruction starts only, and there a
//!   halfword whose low bits are not `0b11` is a whole 16-bit instruction.
//!   A Zcb load or store whose bytes are not all mapped, or a store to
//!   memory the program may not write, is a memory-access fault at the
//!   instruction (`EmuArch::faulting_access`), as on the hardware; like
//!   QEMU's own loads and stores, misaligned accesses are performed.
//! * Set-up: `mstatus.FS = Dirty` (0x6000); with `FS = Off` the first
//!   floating-point instruction raises an illegal-instruction exception.
//! * A CPU exception (illegal instruction, ...) stops unicorn, or reaches the
//!   interrupt hook (number 2 for an illegal instruction), with the pc 4
//!   bytes past the faulting instruction whatever its length; the machine
//!   reports and restores the faulting pc.
//! * Calls leave the return address in `ra` (x1); a host function returns
//!   with `pc = ra`.

use cranelift_exn::Error;
use cranelift_exn::isa::riscv64::zcb::{self, Hart};
use cranelift_exn::isa::{Arch, Reg, RegClass};
use cranelift_exn::memory::Memory;
use unicorn_engine::unicorn_const::{Arch as UcArch, Mode};
use unicorn_engine::{RegisterRISCV, Riscv64CpuModel};

use super::{AccessFault, CpuModel, EmuArch, MissingFlag, RegSlot, Registers};
use crate::core::Core;

mod bitmanip;

/// RISC-V 64.
pub(crate) struct Riscv64;

/// `mstatus.FS` = 0b11 (Dirty): the FPU is on.
const MSTATUS_FS: u64 = 0x6000;

/// An all-ones word, a reserved (illegal) encoding: the host page is filled
/// with it. Not the all-zero `c.unimp`: unicorn 2.1.5 never runs code hooks
/// on a zero halfword, so the host-function hook would not fire.
const ILLEGAL: [u8; 4] = [0xff; 4];

impl Registers for Riscv64 {
    fn arch(&self) -> Arch {
        Arch::Riscv64
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
}

impl EmuArch for Riscv64 {
    fn missing_flags(&self) -> &'static [MissingFlag] {
        MISSING_FLAGS
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

    fn exception_pc(&self, reported: u64) -> u64 {
        // unicorn's exception path advances the RISC-V pc by 4 before it
        // stops, whatever the instruction's length.
        reported.wrapping_sub(4)
    }

    fn trap_fill(&self) -> &'static [u8] {
        &ILLEGAL
    }

    fn emulates_missing_instructions(&self) -> bool {
        true
    }

    fn emulate_missing(&self, core: &mut Core<'_>, pc: u64) -> Result<Option<u64>, Error> {
        let mut bytes = [0u8; 4];
        core.memory().read(pc, &mut bytes[..2])?;
        // A 16-bit instruction (low bits not 0b11) is none of ours; its
        // successor may be unmapped.
        if bytes[0] & 3 != 3 {
            return Ok(None);
        }
        core.memory().read(pc, &mut bytes)?;
        let Some(insn) = bitmanip::decode(u32::from_le_bytes(bytes)) else {
            return Ok(None);
        };
        let a = gpr(core, insn.rs1)?;
        let b = gpr(core, insn.rs2)?;
        set_gpr(core, insn.rd, bitmanip::compute(insn.op, a, b, insn.shamt))?;
        Ok(Some(pc.wrapping_add(4)))
    }

    fn intercepts(&self, code: &[u8]) -> Vec<usize> {
        zcb::offsets(code)
    }

    fn faulting_access(
        &self,
        core: &mut Core<'_>,
        pc: u64,
        writable: &dyn Fn(u64, u64) -> bool,
    ) -> Result<Option<AccessFault>, Error> {
        let Some(access) = read_zcb(core, pc)?.and_then(zcb::Zcb::access) else {
            return Ok(None);
        };
        let (size, write) = (access.size, access.write);
        let address = gpr(core, access.rs1)?.wrapping_add(access.offset);
        let mut probe = [0u8; 2];
        let mapped = core
            .memory()
            .read(address, &mut probe[..size.min(2)])
            .is_ok();
        let allowed = mapped && (!write || writable(address, size as u64));
        Ok((!allowed).then_some(AccessFault {
            address,
            size,
            write,
            mapped,
        }))
    }

    fn carry_out(
        &self,
        core: &mut Core<'_>,
        pc: u64,
        _writable: &dyn Fn(u64, u64) -> bool,
    ) -> Result<Option<u64>, Error> {
        let Some(insn) = read_zcb(core, pc)? else {
            return Ok(None);
        };
        insn.execute(&mut UnicornHart(core))?;
        Ok(Some(pc.wrapping_add(zcb::LEN)))
    }

    fn enter(&self, core: &mut Core<'_>, stack_top: u64, return_address: u64) -> Result<(), Error> {
        // LP64D: sp 16-byte aligned at the call, return address in ra.
        super::enter_with_link_register(core, Arch::Riscv64, stack_top, 0, return_address).map(drop)
    }

    fn return_from_host(&self, core: &mut Core<'_>) -> Result<(), Error> {
        super::return_through_link_register(core, Arch::Riscv64)
    }
}

/// Integer register `x{n}`.
fn gpr(core: &Core<'_>, n: u8) -> Result<u64, Error> {
    core.read_raw(RegisterRISCV::X0 as i32 + i32::from(n), "x register")
}

/// Write integer register `x{n}`; writes to `x0` are dropped.
fn set_gpr(core: &mut Core<'_>, n: u8, value: u64) -> Result<(), Error> {
    if n == 0 {
        return Ok(());
    }
    core.write_raw(RegisterRISCV::X0 as i32 + i32::from(n), "x register", value)
}

/// A unicorn CPU's registers and memory, as the Zcb semantics use them.
/// Accesses the program may not make are caught before, by
/// `faulting_access`.
struct UnicornHart<'c, 'u>(&'c mut Core<'u>);

impl Hart for UnicornHart<'_, '_> {
    type Error = Error;

    fn x(&mut self, n: u8) -> Result<u64, Error> {
        gpr(self.0, n)
    }

    fn set_x(&mut self, n: u8, value: u64) -> Result<(), Error> {
        set_gpr(self.0, n, value)
    }

    fn load(&mut self, address: u64, bytes: &mut [u8]) -> Result<(), Error> {
        self.0.memory().read(address, bytes)
    }

    fn store(&mut self, address: u64, bytes: &[u8]) -> Result<(), Error> {
        self.0.memory().write(address, bytes)
    }
}

/// The Zcb instruction at `pc`, if the halfword there is one.
fn read_zcb(core: &mut Core<'_>, pc: u64) -> Result<Option<zcb::Zcb>, Error> {
    let mut half = [0u8; 2];
    core.memory().read(pc, &mut half)?;
    Ok(zcb::decode(u16::from_le_bytes(half)))
}

/// RISC-V 64 on the `any` model (RV64IMAFDC): QEMU 5.0 predates the ratified
/// vector, half-precision and Zfa extensions, whose instructions raise
/// illegal-instruction exceptions. It predates Zba, Zbb, Zbs, Zbkb, Zicond
/// and Zcb too, but this crate carries out every instruction of those that
/// Cranelift 0.135.8 emits ([`bitmanip`], [`zcb`]), so they are not listed.
/// The CPU lacks Zbc, but Cranelift 0.135.8 emits no Zbc instruction, so
/// `has_zbc` code runs; Zca/Zcd (`has_c`), M, A, F, D, Zicsr and Zifencei
/// run.
const MISSING_FLAGS: &[MissingFlag] = &[
    MissingFlag::new("has_v", "vector"),
    MissingFlag::new("has_zvfh", "vector half-precision"),
    MissingFlag::new("has_zvbb", "vector bit-manipulation"),
    MissingFlag::new("has_zfa", "additional floating-point"),
    MissingFlag::new("has_zfhmin", "minimal half-precision"),
    MissingFlag::new("has_zfh", "half-precision"),
];
