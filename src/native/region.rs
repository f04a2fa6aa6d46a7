//! Memory mapped for a native machine: code and data regions.

use crate::error::Error;

/// One region of memory, in a [`JitSpace`] reservation: mapped
/// read-write; code regions become read-execute once installed.
pub(super) struct Region {
    pub(super) addr: *mut libc::c_void,
    pub(super) len: usize,
    /// The size `allocate_code` was asked for.
    pub(super) size: usize,
    pub(super) installed: bool,
}

impl Region {
    fn start(&self) -> u64 {
        self.addr as u64
    }

    fn end(&self) -> u64 {
        self.addr as u64 + self.len as u64
    }
}

/// `size` rounded up to whole pages (at least one).
fn pages(size: usize) -> usize {
    size.max(1).next_multiple_of(page_size())
}

/// `mmap` of `len` bytes of anonymous private memory with `prot`, at
/// `addr` when `flags` has `MAP_FIXED`.
fn map(
    addr: *mut libc::c_void,
    len: usize,
    prot: libc::c_int,
    flags: libc::c_int,
) -> Result<*mut libc::c_void, Error> {
    // SAFETY: an anonymous private mapping; with MAP_FIXED the caller
    // passes a range of its own reservation.
    let mapped = unsafe {
        libc::mmap(
            addr,
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        return Err(Error::Memory {
            address: addr as u64,
            message: format!("mmap of {len} bytes: {}", std::io::Error::last_os_error()),
        });
    }
    Ok(mapped)
}

/// Bytes of address space a [`JitSpace`] reserves at a time: room for a
/// quarter of a million one-page regions (a module finalized a function
/// at a time for that long appends only). Inaccessible and not committed,
/// it costs no memory, only address space; where even that is limited
/// (`RLIMIT_AS`), a smaller one, then one of just the region's size.
const RESERVATION: usize = 1 << 30;

/// What a [`JitSpace`] reserves when [`RESERVATION`] is refused.
const SMALL_RESERVATION: usize = 16 << 20;

/// Address space reserved for a machine's code and data (inaccessible
/// until used), handed out from low to high addresses: successive code
/// regions lie one after the other, so that a module finalized a function
/// at a time appends to its exception table instead of splicing into it
/// (`ExceptionTable::merge`; `mmap` alone places each new region *below*
/// the last), and data stays within the ±2 GiB of the code that refers to it
/// PC-relatively (colocated data), however many other machines reserve
/// space meanwhile. A region that does not fit the current reservation
/// starts a new one.
pub(super) struct JitSpace {
    /// `(base, len)` of each reservation, the current one last.
    reservations: Vec<(usize, usize)>,
    /// Bytes of the current reservation handed out.
    used: usize,
    /// Bytes to reserve at a time ([`RESERVATION`]).
    reservation: usize,
}

impl Default for JitSpace {
    fn default() -> Self {
        JitSpace::reserving(RESERVATION)
    }
}

impl JitSpace {
    /// A space that reserves `reservation` bytes at a time.
    fn reserving(reservation: usize) -> JitSpace {
        JitSpace {
            reservations: Vec::new(),
            used: 0,
            reservation,
        }
    }

    /// A read-write region of whole pages covering `size` bytes (code or
    /// data), after the last one handed out where it fits.
    pub(super) fn allocate(&mut self, size: usize) -> Result<Region, Error> {
        let len = pages(size);
        let fits = self
            .reservations
            .last()
            .is_some_and(|&(_, reserved)| reserved - self.used >= len);
        if !fits {
            let reserve = |size: usize| {
                let flags = libc::MAP_NORESERVE;
                map(std::ptr::null_mut(), size, libc::PROT_NONE, flags)
                    .map(|base| (base as usize, size))
            };
            let reserved = reserve(self.reservation.max(len))
                .or_else(|_| reserve(SMALL_RESERVATION.max(len)))
                .or_else(|_| reserve(len))?;
            self.reservations.push(reserved);
            self.used = 0;
        }
        let (base, _) = self.reservations[self.reservations.len() - 1];
        let at = (base + self.used) as *mut libc::c_void;
        let addr = map(at, len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_FIXED)?;
        self.used += len;
        Ok(Region {
            addr,
            len,
            size,
            installed: false,
        })
    }
}

impl Drop for JitSpace {
    fn drop(&mut self) {
        for &(base, len) in &self.reservations {
            // SAFETY: our reservation, with every region in it: nothing runs
            // there once the machine is dropped.
            unsafe { libc::munmap(base as *mut libc::c_void, len) };
        }
    }
}

/// Add `region` to `regions`, which are sorted by address and stay so (a
/// region mapped at its hint, after the others, goes at the end).
pub(super) fn insert_sorted(regions: &mut Vec<Region>, region: Region) {
    let at = regions.partition_point(|r| r.start() < region.start());
    regions.insert(at, region);
}

/// The region of `regions` (sorted by address) that starts at `base`.
pub(super) fn starting_at(regions: &mut [Region], base: u64) -> Option<&mut Region> {
    let at = regions.partition_point(|r| r.start() < base);
    regions.get_mut(at).filter(|r| r.start() == base)
}

/// Whether `address` lies in installed code of `regions` (sorted by
/// address, as [`insert_sorted`] keeps them): one binary search.
pub(super) fn contains_code(regions: &[Region], address: u64) -> bool {
    let after = regions.partition_point(|r| r.start() <= address);
    after
        .checked_sub(1)
        .is_some_and(|i| regions[i].installed && address < regions[i].end())
}

/// The host's page size.
pub(super) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_follow_each_other_until_a_reservation_is_full() {
        let page = page_size();
        let mut space = JitSpace::reserving(4 * page);
        let a = space.allocate(1).unwrap();
        let b = space.allocate(page + 1).unwrap();
        let c = space.allocate(page).unwrap();
        assert_eq!((a.len, b.len, c.len), (page, 2 * page, page));
        assert_eq!(b.start(), a.end());
        assert_eq!(c.start(), b.end());
        assert_eq!(space.reservations.len(), 1);
        // The reservation is full: the next region starts another, and
        // one larger than a reservation gets one of its own size.
        let d = space.allocate(page).unwrap();
        let e = space.allocate(9 * page).unwrap();
        assert_eq!(space.reservations.len(), 3);
        assert_eq!(space.reservations[2].1, 9 * page);
        assert_eq!(e.start(), space.reservations[2].0 as u64);
        // Every region is read-write memory of its own.
        for (i, region) in [&a, &b, &c, &d, &e].into_iter().enumerate() {
            // SAFETY: the region is mapped read-write and `len` long.
            let bytes =
                unsafe { std::slice::from_raw_parts_mut(region.addr.cast::<u8>(), region.len) };
            bytes.fill(i as u8);
            assert!(bytes.iter().all(|&x| x == i as u8));
        }
    }

    #[test]
    fn code_is_found_by_address_in_sorted_regions() {
        let page = page_size();
        let mut space = JitSpace::reserving(16 * page);
        let mut regions = Vec::new();
        for _ in 0..3 {
            let mut region = space.allocate(page).unwrap();
            region.installed = true;
            insert_sorted(&mut regions, region);
        }
        // One not installed: not code yet.
        insert_sorted(&mut regions, space.allocate(page).unwrap());
        let starts: Vec<u64> = regions.iter().map(Region::start).collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]));
        for (i, &start) in starts.iter().enumerate() {
            let installed = i < 3;
            assert_eq!(contains_code(&regions, start), installed, "{i}");
            assert_eq!(contains_code(&regions, start + page as u64 - 1), installed);
        }
        assert!(!contains_code(&regions, starts[0] - 1));
        assert!(!contains_code(&regions, starts[3] + page as u64));
        assert!(starting_at(&mut regions, starts[2]).is_some());
        assert!(starting_at(&mut regions, starts[2] + 8).is_none());
    }
}
