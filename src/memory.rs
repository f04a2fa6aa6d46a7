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

    /// This memory as [`HostMemory`], when it is the host's own (in the
    /// host's byte order): then word-by-word users skip the virtual calls.
    fn host_view(&self) -> Option<HostMemory> {
        None
    }
}

/// The host process's own memory, limited to a few address ranges: what a
/// [`crate::native::NativeMachine`] call lets the unwinder touch (the
/// thread's stack and the call's buffer). Reads and writes are plain,
/// bounds-checked loads and stores, so a corrupted frame chain yields an
/// error rather than a fault.
///
/// [`Memory::host_view`] hands one out, so that code generic over
/// [`Memory`] (the unwinder) runs over native memory without a virtual call
/// per word.
#[derive(Clone, Copy, Debug)]
pub struct HostMemory {
    ranges: [(u64, u64); 2],
}

impl HostMemory {
    /// Memory made of the `[low, high)` address ranges in `ranges`.
    ///
    /// # Safety
    ///
    /// Every byte of every range must be readable and writable by this
    /// thread for as long as the value (or a copy) is used, and writes
    /// through it must not break what else uses that memory.
    pub unsafe fn new(ranges: [(u64, u64); 2]) -> HostMemory {
        HostMemory { ranges }
    }

    /// Whether the `len` bytes at `addr` lie inside one of the ranges.
    #[inline]
    pub fn contains(&self, addr: u64, len: usize) -> bool {
        let inside = |&(lo, hi): &(u64, u64)| {
            addr.checked_add(len as u64)
                .is_some_and(|end| addr >= lo && end <= hi)
        };
        self.ranges.iter().any(inside)
    }

    /// The word at `addr`, without a bounds check: for a run of reads
    /// inside a span one [`HostMemory::check`] accepted.
    ///
    /// # Safety
    ///
    /// The 8 bytes at `addr` lie inside a span [`HostMemory::check`]
    /// accepted.
    #[inline]
    pub(crate) unsafe fn read_u64_unchecked(&self, addr: u64) -> u64 {
        // SAFETY: our caller's contract; an unaligned read is allowed.
        unsafe { (addr as *const u64).read_unaligned() }
    }

    /// `Ok` when the `len` bytes at `addr` lie inside one of the ranges,
    /// else an error naming the address.
    #[inline]
    pub(crate) fn check(&self, addr: u64, len: usize) -> Result<(), Error> {
        if self.contains(addr, len) {
            Ok(())
        } else {
            Err(self.outside(addr))
        }
    }

    #[cold]
    fn outside(&self, addr: u64) -> Error {
        let [(lo, hi), ..] = self.ranges;
        Error::Memory {
            address: addr,
            message: format!("outside the thread's stack {lo:#x}..{hi:#x} and the call buffer"),
        }
    }
}

impl Memory for HostMemory {
    fn endianness(&self) -> Endianness {
        if cfg!(target_endian = "big") {
            Endianness::Big
        } else {
            Endianness::Little
        }
    }

    #[inline]
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.check(addr, buf.len())?;
        // SAFETY: the range lies inside memory `new`'s caller vouched for.
        unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    #[inline]
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), Error> {
        self.check(addr, data.len())?;
        // SAFETY: as in `read`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) };
        Ok(())
    }

    #[inline]
    fn read_u64(&self, addr: u64) -> Result<u64, Error> {
        self.check(addr, 8)?;
        // SAFETY: as in `read`; an unaligned read is allowed.
        Ok(unsafe { (addr as *const u64).read_unaligned() })
    }

    #[inline]
    fn write_u64(&mut self, addr: u64, value: u64) -> Result<(), Error> {
        self.check(addr, 8)?;
        // SAFETY: as in `read`.
        unsafe { (addr as *mut u64).write_unaligned(value) };
        Ok(())
    }

    fn host_view(&self) -> Option<HostMemory> {
        Some(*self)
    }
}
