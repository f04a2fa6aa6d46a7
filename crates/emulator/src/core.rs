//! Register and memory access to a unicorn engine, usable from the machine
//! and from inside hooks alike (through [`UcOps`]).

use cranelift_exn::Error;
use cranelift_exn::isa::{Arch, Reg};
use cranelift_exn::memory::Memory;
use unicorn_engine::unicorn_const::uc_error;

pub(crate) use crate::engine::UcOps;
use crate::memory::EmulatedMemory;

/// How a [`Reg`] is reached through unicorn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegSlot {
    /// A register of at most 64 bits, read and written as one `u64`.
    Word(i32),
    /// The low 64 bits (little-endian) of a 128-bit register, which unicorn
    /// only reads and writes whole (x86-64 `xmm`).
    Low64Of128(i32),
}

/// Where one architecture's registers are in unicorn: what [`Core`] needs
/// of an architecture (`arch::EmuArch` extends it with the rest).
pub(crate) trait Registers: Sync {
    /// The architecture.
    fn arch(&self) -> Arch;
    /// The unicorn register behind `reg`, if it exists.
    fn reg_slot(&self, reg: Reg) -> Option<RegSlot>;
    /// The unicorn id of the program counter.
    fn pc_id(&self) -> i32;
}

/// The unicorn slot of `reg`, or an error naming it.
fn slot(emu: &dyn Registers, reg: Reg) -> Result<RegSlot, Error> {
    emu.reg_slot(reg).ok_or_else(|| {
        let arch = emu.arch();
        Error::Machine(format!(
            "{arch}: no emulated register for {} ({reg:?})",
            arch.spec().register_name(reg)
        ))
    })
}

fn reg_error(arch: Arch, what: &str, name: &str, e: uc_error) -> Error {
    Error::Machine(format!("{arch}: {what} register {name}: {e} ({e:?})"))
}

/// Read `reg` (the low 64 bits of a wider register).
pub(crate) fn read_reg(uc: &dyn UcOps, emu: &dyn Registers, reg: Reg) -> Result<u64, Error> {
    let arch = emu.arch();
    let name = || arch.spec().register_name(reg);
    match slot(emu, reg)? {
        RegSlot::Word(id) => uc
            .reg_read(id)
            .map_err(|e| reg_error(arch, "reading", &name(), e)),
        RegSlot::Low64Of128(id) => {
            let bytes = uc
                .reg_read_128(id)
                .map_err(|e| reg_error(arch, "reading", &name(), e))?;
            let mut low = [0; 8];
            low.copy_from_slice(&bytes[..8]);
            Ok(u64::from_le_bytes(low))
        }
    }
}

/// Write `reg` (the low 64 bits of a wider register, keeping the rest).
pub(crate) fn write_reg(
    uc: &mut dyn UcOps,
    emu: &dyn Registers,
    reg: Reg,
    value: u64,
) -> Result<(), Error> {
    let arch = emu.arch();
    let name = || arch.spec().register_name(reg);
    match slot(emu, reg)? {
        RegSlot::Word(id) => uc
            .reg_write(id, value)
            .map_err(|e| reg_error(arch, "writing", &name(), e)),
        RegSlot::Low64Of128(id) => {
            let mut bytes = uc
                .reg_read_128(id)
                .map_err(|e| reg_error(arch, "reading", &name(), e))?;
            bytes[..8].copy_from_slice(&value.to_le_bytes());
            uc.reg_write_128(id, &bytes)
                .map_err(|e| reg_error(arch, "writing", &name(), e))
        }
    }
}

/// The program counter.
pub(crate) fn read_pc(uc: &dyn UcOps, emu: &dyn Registers) -> Result<u64, Error> {
    uc.reg_read(emu.pc_id())
        .map_err(|e| reg_error(emu.arch(), "reading", "pc", e))
}

/// Set the program counter. Inside a hook, unicorn continues at the new pc.
pub(crate) fn write_pc(uc: &mut dyn UcOps, emu: &dyn Registers, value: u64) -> Result<(), Error> {
    uc.reg_write(emu.pc_id(), value)
        .map_err(|e| reg_error(emu.arch(), "writing", "pc", e))
}

/// An emulated CPU and its memory, as the per-architecture code sees it.
pub(crate) struct Core<'m> {
    uc: &'m mut dyn UcOps,
    emu: &'static dyn Registers,
}

impl<'m> Core<'m> {
    /// Wrap an engine.
    pub(crate) fn new(uc: &'m mut dyn UcOps, emu: &'static dyn Registers) -> Self {
        Core { uc, emu }
    }

    /// Read a register.
    pub(crate) fn read_reg(&self, reg: Reg) -> Result<u64, Error> {
        read_reg(&*self.uc, self.emu, reg)
    }

    /// Write a register.
    pub(crate) fn write_reg(&mut self, reg: Reg, value: u64) -> Result<(), Error> {
        write_reg(&mut *self.uc, self.emu, reg, value)
    }

    /// Read a register by unicorn id (control registers); `name` is for
    /// messages.
    pub(crate) fn read_raw(&self, id: i32, name: &str) -> Result<u64, Error> {
        self.uc
            .reg_read(id)
            .map_err(|e| reg_error(self.emu.arch(), "reading", name, e))
    }

    /// Write a register by unicorn id (control registers).
    pub(crate) fn write_raw(&mut self, id: i32, name: &str, value: u64) -> Result<(), Error> {
        self.uc
            .reg_write(id, value)
            .map_err(|e| reg_error(self.emu.arch(), "writing", name, e))
    }

    /// Set the program counter.
    pub(crate) fn set_pc(&mut self, value: u64) -> Result<(), Error> {
        write_pc(&mut *self.uc, self.emu, value)
    }

    /// The memory, as a [`Memory`].
    pub(crate) fn memory(&mut self) -> EmulatedMemory<'_> {
        let endianness = self.emu.arch().endianness();
        EmulatedMemory::new(&mut *self.uc, endianness)
    }

    /// Read a 64-bit word in the target's byte order.
    pub(crate) fn read_u64(&mut self, address: u64) -> Result<u64, Error> {
        self.memory().read_u64(address)
    }

    /// Write a 64-bit word in the target's byte order.
    pub(crate) fn write_u64(&mut self, address: u64, value: u64) -> Result<(), Error> {
        self.memory().write_u64(address, value)
    }
}
