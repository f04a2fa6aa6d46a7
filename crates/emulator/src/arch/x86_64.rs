//! x86-64 in unicorn-engine.
//!
//! * CPU model: `Haswell` (unicorn's default for x86-64). Checked: code
//!   compiled with `has_sse41 has_sse42 has_popcnt has_lzcnt has_bmi1
//!   has_bmi2` runs and computes correctly (the `qemu64` and `Nehalem`
//!   models reject it). **Do not emulate code compiled with `has_avx`**:
//!   unicorn 2.1.5 (QEMU 5.0 TCG) decodes VEX-encoded SSE instructions but
//!   computes some of them wrongly (no fault, a wrong result), and rejects
//!   FMA3 (`has_fma`) as an invalid instruction. Cranelift's default flags
//!   use none of these.
//! * Set-up: `MXCSR = 0x1f80` (all SIMD floating-point exceptions masked,
//!   round to nearest), the value a Linux process starts with; unicorn
//!   resets it to 0. In 64-bit mode unicorn already sets `CR4.OSFXSR` (and
//!   `OSXSAVE`), so SSE instructions run from reset.
//! * Calls push the return address; a host function returns by popping it.

use cranelift_exn::Error;
use cranelift_exn::isa::{Arch, Reg, RegClass};
use unicorn_engine::unicorn_const::{Arch as UcArch, Mode};
use unicorn_engine::{RegisterX86, X86CpuModel};

use super::{CpuModel, EmuArch, MissingFlag, RegSlot, Registers};
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

/// The MXCSR of a fresh Linux process: every exception masked, round to
/// nearest even, no flush-to-zero.
const MXCSR_DEFAULT: u64 = 0x1f80;

impl Registers for X86_64 {
    fn arch(&self) -> Arch {
        Arch::X86_64
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
}

impl EmuArch for X86_64 {
    fn missing_flags(&self) -> &'static [MissingFlag] {
        MISSING_FLAGS
    }

    fn hooks_exceptions(&self) -> bool {
        true
    }

    fn resets_after_fault(&self) -> bool {
        true
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

    fn setup(&self, core: &mut Core<'_>) -> Result<(), Error> {
        core.write_raw(RegisterX86::MXCSR as i32, "mxcsr", MXCSR_DEFAULT)
    }

    fn trap_fill(&self) -> &'static [u8] {
        &UD2
    }

    fn enter(&self, core: &mut Core<'_>, stack_top: u64, return_address: u64) -> Result<(), Error> {
        // As if `call` had just pushed the return address onto a stack that
        // was 16-byte aligned: rsp ≡ 8 (mod 16).
        let rsp = stack_top
            .checked_sub(8)
            .ok_or_else(|| Error::Machine(format!("x86_64: stack top {stack_top:#x} too low")))?;
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

/// x86-64 on the `Haswell` model: QEMU 5.0's TCG implements no VEX/EVEX
/// instruction set correctly (AVX decodes but some instructions compute wrong
/// results; FMA3 is an invalid opcode), so every AVX-family flag is out.
/// SSE3–SSE4.2, POPCNT, LZCNT, BMI1/2 and CMPXCHG16B run.
const MISSING_FLAGS: &[MissingFlag] = &[
    MissingFlag::new("has_avx", "AVX"),
    MissingFlag::new("has_avx2", "AVX2"),
    MissingFlag::new("has_fma", "FMA3"),
    MissingFlag::new("has_avx_vnni", "AVX-VNNI"),
    MissingFlag::new("has_avx512bitalg", "AVX-512 BITALG"),
    MissingFlag::new("has_avx512dq", "AVX-512 DQ"),
    MissingFlag::new("has_avx512vl", "AVX-512 VL"),
    MissingFlag::new("has_avx512vbmi", "AVX-512 VBMI"),
    MissingFlag::new("has_avx512f", "AVX-512 F"),
    MissingFlag::new("has_avx512vnni", "AVX-512 VNNI"),
];
