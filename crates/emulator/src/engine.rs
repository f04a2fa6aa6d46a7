//! The unicorn engine operations the crate uses, behind an object-safe
//! trait.
//!
//! Hooks receive a `&mut Unicorn<'u, _>` whose lifetime `'u` differs from
//! the machine's, so the rest of the crate reaches the engine through
//! [`UcOps`], with that lifetime erased.

use unicorn_engine::Unicorn;
use unicorn_engine::unicorn_const::uc_error;

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
