//! x86-64 in unicorn-engine.
//!
//! * CPU model: `Haswell` (unicorn's default for x86-64). Under QEMU 5's TCG,
//!   which unicorn 2.1.5 is built on, it executes SSE through SSE4.2, POPCNT,
//!   LZCNT, BMI1 and BMI2 — every x86 extension Cranelift can use except the
//!   AVX families, which TCG of that vintage does not implement on any model.
//! * Set-up: none. In 64-bit mode unicorn already sets `CR4.OSFXSR`, so SSE
//!   instructions run from reset.
//! * Calls push the return address; a host function returns by popping it.

use cranelift_exn::Error;
use cranelift_exn::isa::{Arch, Reg, RegClass};
use unicorn_engine::unicorn_const::{Arch as UcArch, Mode};
use unicorn_engine::{RegisterX86, X86CpuModel};

use super::{CpuModel, EmuArch, RegSlot};
use crate::core::Core;

/// x86-64.
pub(crate) struct X86_64;

/// General-purpose registers in hardware-encoding order (rax = 0 … r15 = 15).
const INT: [RegisterX86; 16] = [
    RegisterX86::RAX,
    RegisterX86::RCX,
    RegisterX86::RDX,
    RegisterX86::RBX,
    RegisterX86::RSP,
    RegisterX86::RBP,
    RegisterX86::RSI,
    RegisterX86::RDI,
    RegisterX86::R8,
    RegisterX86::R9,
    RegisterX86::R10,
    RegisterX86::R11,
    RegisterX86::R12,
    RegisterX86::R13,
    RegisterX86::R14,
    RegisterX86::R15,
];

/// `ud2`: the host page is filled with it.
const UD2: [u8; 2] = [0x0f, 0x0b];

const RSP: Reg = Reg::int(4);

impl EmuArch for X86_64 {
    fn arch(&self) -> Arch {
        Arch::X86_64
    }

    fn unicorn_mode(&self) -> (UcArch, Mode) {
        (UcArch::X86, Mode::MODE_64)
    }

    fn cpu_model(&self) -> CpuModel {
        CpuModel {
            id: X86CpuModel::HASWELL as i32,
            name: "Haswell",
        }
    }

    fn setup(&self, _core: &mut Core<'_>) -> Result<(), Error> {
        Ok(())
    }

    fn reg_slot(&self, reg: Reg) -> Option<RegSlot> {
        let hw = usize::from(reg.hw);
        match reg.class {
            RegClass::Int => INT.get(hw).map(|&r| RegSlot::Word(r as i32)),
            RegClass::Float if hw < 16 => Some(RegSlot::Low64Of128(
                RegisterX86::XMM0 as i32 + i32::from(reg.hw),
            )),
            RegClass::Float => None,
        }
    }

    fn pc_id(&self) -> i32 {
        RegisterX86::RIP as i32
    }

    fn trap_fill(&self) -> &'static [u8] {
        &UD2
    }

    fn enter(
        &self,
        core: &mut Core<'_>,
        stack_top: u64,
        return_address: u64,
    ) -> Result<(), Error> {
        // As if `call` had just pushed the return address onto a stack that
        // was 16-byte aligned: rsp ≡ 8 (mod 16).
        let rsp = stack_top - 8;
        core.write_u64(rsp, return_address)?;
        core.write_reg(RSP, rsp)
    }

    fn return_from_host(&self, core: &mut Core<'_>) -> Result<(), Error> {
        // `ret`: pop the return address into rip.
        let rsp = core.read_reg(RSP)?;
        let target = core.read_u64(rsp)?;
        core.write_reg(RSP, rsp.wrapping_add(8))?;
        core.set_pc(target)
    }
}
