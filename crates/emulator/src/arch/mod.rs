//! Per-architecture facts for running code in unicorn-engine.
//!
//! Each file here holds, for one architecture, everything the emulator needs
//! that differs by ISA: the unicorn architecture and mode, the CPU model, the
//! control-register writes that make Cranelift's code runnable, how this
//! crate's [`Reg`] maps to unicorn register ids, the bytes that fill the
//! host-function page, how a call is entered and how a host function returns.
//! The rest of the crate reaches them only through [`EmuArch`], obtained with
//! [`for_arch`].

use cranelift_exn::Error;
use cranelift_exn::isa::{Arch, Reg};
use unicorn_engine::unicorn_const::{Arch as UcArch, Mode};

pub(crate) use crate::core::{Core, RegSlot, Registers};

mod aarch64;
mod riscv64;
mod s390x;
mod x86_64;

/// The CPU model an architecture is emulated with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CpuModel {
    /// unicorn's `uc_cpu_*` number.
    pub id: i32,
    /// Human-readable name, for messages and documentation.
    pub name: &'static str,
}

/// Everything about one architecture that the emulator needs.
pub(crate) trait EmuArch: Registers + Sync {
    /// unicorn's architecture and mode for it.
    fn unicorn_mode(&self) -> (UcArch, Mode);
    /// The CPU model selected right after the engine is opened.
    fn cpu_model(&self) -> CpuModel;
    /// Whether to bypass the architecture's MMU with unicorn's identity
    /// "virtual TLB", so that only unicorn's mappings and permissions decide
    /// every access.
    fn virtual_tlb(&self) -> bool {
        false
    }
    /// Control-register writes needed before Cranelift code can run (enable
    /// the FPU/vector unit and so on).
    fn setup(&self, core: &mut Core<'_>) -> Result<(), Error>;
    /// The address of the instruction that raised a CPU exception, given the
    /// program counter unicorn reports when it stops with
    /// `UC_ERR_EXCEPTION` (or reads inside the interrupt hook).
    fn exception_pc(&self, reported: u64) -> u64 {
        reported
    }
    /// Whether CPU exceptions go to [`EmuArch::emulate_missing`] first (an
    /// interrupt hook is installed), because unicorn lacks instructions that
    /// Cranelift emits for this architecture by default.
    fn emulates_missing_instructions(&self) -> bool {
        false
    }
    /// Whether CPU exceptions are caught by an interrupt hook (which stops
    /// the engine with the faulting pc) rather than left to end `emu_start`.
    fn hooks_exceptions(&self) -> bool {
        self.emulates_missing_instructions()
    }
    /// Whether delivering a fault must first put back the CPU state saved
    /// right after set-up: on x86-64 the emulated CPU remembers the
    /// exception "in flight" (it never saw it delivered), so the next one
    /// becomes a double fault and the one after that stops the engine.
    fn resets_after_fault(&self) -> bool {
        false
    }
    /// Called when the instruction at `pc` raised a CPU exception: if it is
    /// one unicorn does not implement and this crate does, carry it out and
    /// return the address of the next instruction; `Ok(None)` leaves the
    /// exception to be reported.
    fn emulate_missing(&self, _core: &mut Core<'_>, _pc: u64) -> Result<Option<u64>, Error> {
        Ok(None)
    }
    /// Offsets in `code`, machine code about to be installed, of the
    /// instructions unicorn 2.1.5 executes without any fault but wrongly, and
    /// which this crate therefore carries out itself ([`EmuArch::carry_out`]
    /// from a code hook on exactly each such address).
    ///
    /// Code may hold data (literal pools, jump tables), so implementations
    /// look at every offset an instruction could start at rather than
    /// decoding linearly: a real instruction is never missed, and an offset
    /// that turns out not to start an instruction costs only an idle hook,
    /// since unicorn runs code hooks at instruction starts only.
    fn intercepts(&self, _code: &[u8]) -> Vec<usize> {
        Vec::new()
    }
    /// Carry out the intercepted instruction at `pc` with the
    /// architecture's semantics and return the address of the next
    /// instruction; `Ok(None)` leaves the instruction to unicorn, which is
    /// right when the bytes at `pc` are not such an instruction (any more) or
    /// when the instruction raises an exception unicorn raises too (an
    /// unmapped or misaligned access, an enabled IEEE trap). `writable` says
    /// whether `len` bytes at an address may be stored to by the program
    /// (unicorn's own memory writes ignore page protection).
    fn carry_out(
        &self,
        _core: &mut Core<'_>,
        _pc: u64,
        _writable: &dyn Fn(u64, u64) -> bool,
    ) -> Result<Option<u64>, Error> {
        Ok(None)
    }
    /// Called before [`EmuArch::carry_out`]: the data access of the
    /// intercepted instruction at `pc` if it faults on the hardware (an
    /// unmapped address, or a store `writable` refuses). The machine then
    /// delivers a memory-access fault at `pc` instead of carrying the
    /// instruction out; needed where unicorn would run the bytes as another
    /// instruction rather than fault.
    fn faulting_access(
        &self,
        _core: &mut Core<'_>,
        _pc: u64,
        _writable: &dyn Fn(u64, u64) -> bool,
    ) -> Result<Option<AccessFault>, Error> {
        Ok(None)
    }
    /// The ISA flags whose instructions the emulated CPU cannot execute
    /// (see `capabilities::unsupported_reason`).
    fn missing_flags(&self) -> &'static [MissingFlag] {
        &[]
    }
    /// Why `code` (one function) would compute wrong results here although
    /// the CPU has every flag it was built with: an instruction unicorn
    /// mis-executes that [`EmuArch::carry_out`] does not cover (see
    /// `capabilities::unsupported_code`).
    fn mis_executed(&self, _code: &[u8]) -> Option<String> {
        None
    }
    /// A byte pattern, repeated to fill the host-function page, that decodes
    /// as an undefined instruction: executing the page anywhere but at a
    /// hooked host-function address is an error, never a silent slide.
    fn trap_fill(&self) -> &'static [u8];
    /// Make the next instruction executed behave as the first of a function
    /// called with the C ABI: the stack pointer is derived from `stack_top`
    /// (16-byte aligned, the highest usable address plus one) and the
    /// function returns to `return_address`.
    fn enter(&self, core: &mut Core<'_>, stack_top: u64, return_address: u64) -> Result<(), Error>;
    /// Leave a host function the way its C `return` would: the program
    /// counter goes back to the caller and the stack is as the caller left it.
    fn return_from_host(&self, core: &mut Core<'_>) -> Result<(), Error>;
}

/// A data access that faults (see [`EmuArch::faulting_access`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AccessFault {
    /// The first byte accessed.
    pub address: u64,
    /// Bytes accessed.
    pub size: usize,
    /// A store (else a load).
    pub write: bool,
    /// Whether every byte is mapped (a store to read-only memory).
    pub mapped: bool,
}

/// An ISA flag the emulated CPU cannot execute, with what it enables.
pub(crate) struct MissingFlag {
    /// The Cranelift ISA flag.
    pub flag: &'static str,
    /// The extension or facility, for messages.
    pub what: &'static str,
}

impl MissingFlag {
    pub(crate) const fn new(flag: &'static str, what: &'static str) -> Self {
        MissingFlag { flag, what }
    }
}

/// The emulator facts for `arch`.
pub(crate) fn for_arch(arch: Arch) -> &'static dyn EmuArch {
    match arch {
        Arch::X86_64 => &x86_64::X86_64,
        Arch::Aarch64 => &aarch64::Aarch64,
        Arch::Riscv64 => &riscv64::Riscv64,
        Arch::S390x => &s390x::S390x,
    }
}

/// The register the C ABI returns through on an ISA with a link register,
/// from the ISA's spec.
fn link_register(arch: Arch) -> Result<Reg, Error> {
    arch.spec().link_register().ok_or_else(|| {
        Error::Machine(format!(
            "{arch}: the ISA spec names no link register to return through"
        ))
    })
}

/// Enter a function on an ISA whose call instruction leaves the return
/// address in a link register: `sp = stack_top - reserve`, `lr =
/// return_address`.
fn enter_with_link_register(
    core: &mut Core<'_>,
    arch: Arch,
    stack_top: u64,
    reserve: u64,
    return_address: u64,
) -> Result<u64, Error> {
    let sp = stack_top
        .checked_sub(reserve)
        .ok_or_else(|| Error::Machine(format!("{arch}: stack top {stack_top:#x} too low")))?;
    core.write_reg(arch.spec().stack_pointer(), sp)?;
    core.write_reg(link_register(arch)?, return_address)?;
    Ok(sp)
}

/// Return from a host function on an ISA with a link register: `pc = lr`.
fn return_through_link_register(core: &mut Core<'_>, arch: Arch) -> Result<(), Error> {
    let target = core.read_reg(link_register(arch)?)?;
    core.set_pc(target)
}
