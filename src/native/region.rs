//! Memory mapped for a native machine: code and data regions.

/// One region of code memory: mapped read-write, then, once installed,
/// read-execute.
pub(super) struct Region {
    pub(super) addr: *mut libc::c_void,
    pub(super) len: usize,
    /// The size `allocate_code` was asked for.
    pub(super) size: usize,
    pub(super) installed: bool,
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
