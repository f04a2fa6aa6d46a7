//! Memory mapped for a native machine: code and data regions.

use std::ptr;

use crate::error::Error;

/// One region of code memory: mapped read-write, then, once installed,
/// read-execute.
pub(super) struct Region {
    pub(super) addr: *mut libc::c_void,
    pub(super) len: usize,
    /// The size `allocate_code` was asked for.
    pub(super) size: usize,
    pub(super) installed: bool,
}

impl Region {
    /// A fresh read-write mapping of whole pages covering `size` bytes
    /// (at least one page), not installed.
    pub(super) fn map(size: usize) -> Result<Region, Error> {
        let len = size.max(1).next_multiple_of(page_size());
        // SAFETY: an anonymous private mapping with no address hint.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(Error::Memory {
                address: 0,
                message: format!("mmap of {len} bytes: {}", std::io::Error::last_os_error()),
            });
        }
        Ok(Region {
            addr,
            len,
            size,
            installed: false,
        })
    }
}

/// Whether `address` lies in installed code of `regions`.
pub(super) fn contains_code(regions: &[Region], address: u64) -> bool {
    regions
        .iter()
        .any(|r| r.installed && address >= r.addr as u64 && address < r.addr as u64 + r.len as u64)
}

/// The host's page size.
pub(super) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}
