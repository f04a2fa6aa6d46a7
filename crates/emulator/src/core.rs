//! Register and memory access to a unicorn engine, usable from the machine
//! and from inside hooks alike.
//!
//! Hooks receive a `&mut Unicorn<'u, _>` whose lifetime `'u` differs from
//! the machine's, so everything here goes through [`UcOps`], an object-safe
//! view of the few engine operations the crate needs.

use cranelift_exn::Error;
use cranelift_exn::isa::{Arch, Reg};
use cranelift_exn::memory::Memory;
use unicorn_engine::Unicorn;
use unicorn_engine::unicorn_const::uc_error;

use crate::arch::{EmuArch, RegSlot};
use crate::memory::EmulatedMemory;

/// The engine operations the crate uses, with the engine's lifetime erased.
pub(crate) trait UcOps {
    /// `uc_mem_read`.
    fn mem_read(&self, address: u64, buf: &mut [u8]) -> Result<(), uc_error>;
    /// `uc_mem_write`.
    fn mem_write(&mut self, address: u64, data: &[u8]) -> Result<(), uc_error>;
    /// `uc_reg_read` of a register of at most 64 bits.
    fn reg_read(&self, id: i32) -> Result<u64, uc_error>;
    /// `uc_reg_write` of a register of at most 64 bits.
    fn reg_write(&mut self, id: i32, value: u64) -> Result<(), uc_error>;
    /// `uc_reg_read` of a 128-bit register.
    fn reg_read_128(&self, id: i32) -> Result<[u8; 16], uc_error>;
    /// `uc_reg_write` of a 128-bit register.
    fn reg_write_128(&mut self, id: i32, value: &[u8; 16]) -> Result<(), uc_error>;
}

impl<D> UcOps for Unicorn<'_, D> {
    fn mem_read(&self, address: u64, buf: &mut [u8]) -> Result<(), uc_error> {
        Unicorn::mem_read(self, address, buf)
    }

    fn mem_write(&mut self, address: u64, data: &[u8]) -> Result<(), uc_error> {
        Unicorn::mem_write(self, address, data)
    }

    fn reg_read(&self, id: i32) -> Result<u64, uc_error> {
        Unicorn::reg_read(self, id)
    }

    fn reg_write(&mut self, id: i32, value: u64) -> Result<(), uc_error> {
        Unicorn::reg_write(self, id, value)
    }

    fn reg_read_128(&self, id: i32) -> Result<[u8; 16], uc_error> {
        // `reg_read_long` sizes its buffer from the register id, so unicorn
        // never writes past it.
        let bytes = self.reg_read_long(id)?;
        <[u8; 16]>::try_from(&bytes[..]).map_err(|_| uc_error::ARG)
    }

    fn reg_write_128(&mut self, id: i32, value: &[u8; 16]) -> Result<(), uc_error> {
        self.reg_write_long(id, value)
    }
}

/// The unicorn slot of `reg`, or an error naming it.
fn slot(emu: &dyn EmuArch, reg: Reg) -> Result<RegSlot, Error> {
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
pub(crate) fn read_reg(uc: &dyn UcOps, emu: &dyn EmuArch, reg: Reg) -> Result<u64, Error> {
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
    emu: &dyn EmuArch,
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
pub(crate) fn read_pc(uc: &dyn UcOps, emu: &dyn EmuArch) -> Result<u64, Error> {
    uc.reg_read(emu.pc_id())
        .map_err(|e| reg_error(emu.arch(), "reading", "pc", e))
}

/// Set the program counter. Inside a hook, unicorn continues at the new pc.
pub(crate) fn write_pc(uc: &mut dyn UcOps, emu: &dyn EmuArch, value: u64) -> Result<(), Error> {
    uc.reg_write(emu.pc_id(), value)
        .map_err(|e| reg_error(emu.arch(), "writing", "pc", e))
}

/// An emulated CPU and its memory, as the per-architecture code sees it.
pub(crate) struct Core<'m> {
    uc: &'m mut dyn UcOps,
    emu: &'static dyn EmuArch,
}

impl<'m> Core<'m> {
    /// Wrap an engine.
    pub(crate) fn new(uc: &'m mut dyn UcOps, emu: &'static dyn EmuArch) -> Self {
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
