//! [`Memory`] over an emulator's address space.

use cranelift_exn::Error;
use cranelift_exn::isa::Endianness;
use cranelift_exn::memory::Memory;

use crate::engine::UcOps;

/// The memory of an [`EmulatedMachine`](crate::EmulatedMachine), as the
/// unwinder and host services see it: byte reads and writes, words in the
/// target's byte order. Accessing an unmapped address is an
/// [`Error::Memory`], never a fault.
///
/// Obtained from [`EmulatedMachine::memory`](crate::EmulatedMachine::memory),
/// and handed to [`HostServices`](cranelift_exn::machine::HostServices) while
/// JIT code is running.
pub struct EmulatedMemory<'m> {
    uc: &'m mut dyn UcOps,
    endianness: Endianness,
}

impl<'m> EmulatedMemory<'m> {
    pub(crate) fn new(uc: &'m mut dyn UcOps, endianness: Endianness) -> Self {
        EmulatedMemory { uc, endianness }
    }
}

impl Memory for EmulatedMemory<'_> {
    fn endianness(&self) -> Endianness {
        self.endianness
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.uc.mem_read(addr, buf).map_err(|e| Error::Memory {
            address: addr,
            message: format!("reading {} bytes: {e} ({e:?})", buf.len()),
        })
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), Error> {
        self.uc.mem_write(addr, data).map_err(|e| Error::Memory {
            address: addr,
            message: format!("writing {} bytes: {e} ({e:?})", data.len()),
        })
    }
}
