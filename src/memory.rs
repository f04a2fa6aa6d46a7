//! Word access to a target's memory: the host's own (native) or an emulator's.

use crate::error::Error;
use crate::isa::Endianness;

/// Byte-addressed memory of a (native or emulated) target.
///
/// The unwinder and the throw service read and write frames and register
/// contexts only through this trait, so the same code runs on a native stack
/// and on an emulated one.
pub trait Memory {
    /// The target's byte order.
    fn endianness(&self) -> Endianness;
    /// Fill `buf` from `addr`. An unmapped address is an error, not a fault.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Error>;
    /// Write `data` at `addr`.
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), Error>;

    /// Read a 64-bit word in the target's byte order.
    fn read_u64(&self, addr: u64) -> Result<u64, Error> {
        let mut bytes = [0; 8];
        self.read(addr, &mut bytes)?;
        Ok(self.endianness().read_u64(bytes))
    }

    /// Write a 64-bit word in the target's byte order.
    fn write_u64(&mut self, addr: u64, value: u64) -> Result<(), Error> {
        let bytes = self.endianness().write_u64(value);
        self.write(addr, &bytes)
    }
}
