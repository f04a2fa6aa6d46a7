//! The bookkeeping of an emulated machine's code and data memory: regions
//! handed out by bump allocation from a fixed range of target addresses,
//! and the checks [`Machine::install_code`] and [`Machine::install_data`]
//! promise.
//!
//! A machine keeps one [`CodeRegions`] and one [`DataRegions`]; they only
//! count addresses. Mapping, writing and protecting the memory stays with
//! the machine, which hands the mapping step to the allocators as a closure
//! so that a region is recorded only once its memory exists.
//!
//! [`Machine::install_code`]: super::Machine::install_code
//! [`Machine::install_data`]: super::Machine::install_data

use std::collections::BTreeMap;

use crate::error::Error;
use crate::isa::Arch;

/// `value` rounded up to a multiple of `align` (a power of two), or `None`
/// when that overflows.
pub fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// One [`Machine::allocate_code`](super::Machine::allocate_code) region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CodeRegion {
    /// The size asked for.
    size: u64,
    /// Whether code has been installed in it.
    installed: bool,
}

/// The code regions of a machine: bump-allocated from `base` up to `limit`,
/// each installed at most once, at its start, with bytes that fit it.
#[derive(Clone, Debug)]
pub struct CodeRegions {
    arch: Arch,
    limit: u64,
    next: u64,
    regions: BTreeMap<u64, CodeRegion>,
}

impl CodeRegions {
    /// No regions yet; they will lie in `base..limit` of `arch`'s machine
    /// (`arch` names the machine in error messages).
    pub fn new(arch: Arch, base: u64, limit: u64) -> Self {
        CodeRegions {
            arch,
            limit,
            next: base,
            regions: BTreeMap::new(),
        }
    }

    /// The end of the last region allocated (the start of the range while
    /// there is none).
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Allocate a region of `size` bytes at the next multiple of `align`
    /// (a power of two) and return its start. `map(start, end)` runs first
    /// and makes `start..end` ready for code; the region is recorded only
    /// when it succeeds. `Err` when the range is exhausted.
    pub fn allocate(
        &mut self,
        size: usize,
        align: u64,
        map: impl FnOnce(u64, u64) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        let (arch, limit) = (self.arch, self.limit);
        let exhausted = |start: u64| Error::Memory {
            address: start,
            message: format!(
                "{arch}: code region exhausted allocating {size:#x} bytes (limit {limit:#x})"
            ),
        };
        let start = align_up(self.next, align).ok_or_else(|| exhausted(self.next))?;
        let end = start
            .checked_add(size as u64)
            .filter(|&end| end <= limit)
            .ok_or_else(|| exhausted(start))?;
        map(start, end)?;
        self.next = end;
        self.regions.insert(
            start,
            CodeRegion {
                size: size as u64,
                installed: false,
            },
        );
        Ok(start)
    }

    /// Check that `len` bytes of code may be installed at `base`: it is the
    /// start of a region not installed before, and they fit it. Returns the
    /// region's size. Nothing is recorded; see
    /// [`CodeRegions::mark_installed`].
    pub fn check_install(&self, base: u64, len: usize) -> Result<u64, Error> {
        let arch = self.arch;
        let Some(region) = self.regions.get(&base) else {
            return Err(Error::Memory {
                address: base,
                message: format!(
                    "{arch}: installing {len:#x} bytes at an address allocate_code did not return"
                ),
            });
        };
        if region.installed {
            return Err(Error::Memory {
                address: base,
                message: format!(
                    "{arch}: code is already installed here (install_code runs once per region)"
                ),
            });
        }
        if len as u64 > region.size {
            return Err(Error::Memory {
                address: base,
                message: format!(
                    "{arch}: {len:#x} bytes do not fit the {:#x} bytes allocated",
                    region.size
                ),
            });
        }
        Ok(region.size)
    }

    /// Record that the region starting at `base` holds its code, so that it
    /// is never installed again.
    pub fn mark_installed(&mut self, base: u64) {
        if let Some(region) = self.regions.get_mut(&base) {
            region.installed = true;
        }
    }

    /// Whether `address` lies in a region with code installed (within the
    /// size asked for).
    pub fn is_installed_code(&self, address: u64) -> bool {
        self.regions
            .range(..=address)
            .next_back()
            .is_some_and(|(&base, r)| r.installed && address - base < r.size)
    }
}

/// The data regions of a machine ([`Machine::allocate_data`]): whole pages
/// bump-allocated from `base` up to `limit`, so that each can be protected
/// on its own.
///
/// [`Machine::allocate_data`]: super::Machine::allocate_data
#[derive(Clone, Debug)]
pub struct DataRegions {
    arch: Arch,
    base: u64,
    limit: u64,
    page: u64,
    next: u64,
}

impl DataRegions {
    /// No regions yet; they will be `page`-sized pages (a power of two) in
    /// `base..limit` of `arch`'s machine.
    pub fn new(arch: Arch, base: u64, limit: u64, page: u64) -> Self {
        DataRegions {
            arch,
            base,
            limit,
            page,
            next: base,
        }
    }

    /// The bytes of whole pages that hold `len` bytes (one page for none).
    pub fn pages(&self, len: usize) -> u64 {
        align_up(len.max(1) as u64, self.page).unwrap_or(self.page)
    }

    /// Allocate the pages of a region of `size` bytes aligned to `align` (a
    /// power of two, at most a page) and return its start. `map(start,
    /// len)` runs first and makes the `len` bytes at `start` readable and
    /// writable; the region is recorded only when it succeeds.
    pub fn allocate(
        &mut self,
        size: usize,
        align: u64,
        map: impl FnOnce(u64, u64) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        let (arch, page, limit) = (self.arch, self.page, self.limit);
        if !align.is_power_of_two() || align > page {
            return Err(Error::Memory {
                address: 0,
                message: format!("{arch}: data alignment {align} (at most {page:#x})"),
            });
        }
        let start = self.next;
        let len = align_up(size.max(1) as u64, page)
            .filter(|len| start.checked_add(*len).is_some_and(|end| end <= limit))
            .ok_or_else(|| Error::Memory {
                address: start,
                message: format!(
                    "{arch}: data region exhausted allocating {size:#x} bytes (limit {limit:#x})"
                ),
            })?;
        map(start, len)?;
        self.next = start + len;
        Ok(start)
    }

    /// Check that `len` bytes at `base` lie in allocated data.
    pub fn check_install(&self, base: u64, len: usize) -> Result<(), Error> {
        let end = base.checked_add(len as u64);
        if base < self.base || end.is_none_or(|end| end > self.next) {
            return Err(Error::Memory {
                address: base,
                message: format!(
                    "{}: installing {len:#x} bytes outside allocated data {:#x}..{:#x}",
                    self.arch, self.base, self.next
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_error(result: Result<impl std::fmt::Debug, Error>) -> (u64, String) {
        match result {
            Err(Error::Memory { address, message }) => (address, message),
            other => panic!("not a memory error: {other:?}"),
        }
    }

    /// A mapping step that succeeds and records what it was asked to map.
    fn recording(mapped: &mut Vec<(u64, u64)>) -> impl FnMut(u64, u64) -> Result<(), Error> + '_ {
        |a, b| {
            mapped.push((a, b));
            Ok(())
        }
    }

    #[test]
    fn align_up_rounds_to_the_next_multiple() {
        assert_eq!(align_up(0, 16), Some(0));
        assert_eq!(align_up(1, 16), Some(16));
        assert_eq!(align_up(32, 16), Some(32));
        assert_eq!(align_up(u64::MAX, 16), None);
    }

    #[test]
    fn code_regions_are_aligned_and_bounded() {
        let mut code = CodeRegions::new(Arch::X86_64, 0x1000, 0x2000);
        let mut mapped = Vec::new();
        let mut map = recording(&mut mapped);
        assert_eq!(code.allocate(10, 16, &mut map), Ok(0x1000));
        assert_eq!(code.allocate(10, 16, &mut map), Ok(0x1010));
        assert_eq!(code.next(), 0x101a);
        drop(map);
        assert_eq!(mapped, [(0x1000, 0x100a), (0x1010, 0x101a)]);
        let (address, message) = memory_error(code.allocate(0x1000, 16, |_, _| Ok(())));
        assert_eq!(address, 0x1020);
        assert_eq!(
            message,
            "x86_64: code region exhausted allocating 0x1000 bytes (limit 0x2000)"
        );
        assert_eq!(code.next(), 0x101a);
    }

    #[test]
    fn a_failed_mapping_records_no_code_region() {
        let mut code = CodeRegions::new(Arch::Aarch64, 0x1000, 0x2000);
        let failed = code.allocate(8, 0x100, |start, _| {
            Err(Error::Memory {
                address: start,
                message: "no".into(),
            })
        });
        assert!(failed.is_err());
        assert_eq!(code.next(), 0x1000);
        assert!(code.check_install(0x1000, 8).is_err());
    }

    #[test]
    fn code_is_installed_once_at_a_region_start_and_must_fit() {
        let mut code = CodeRegions::new(Arch::Riscv64, 0x1000, 0x2000);
        let base = code.allocate(8, 16, |_, _| Ok(())).unwrap();
        assert_eq!(
            memory_error(code.check_install(base + 4, 2)).1,
            "riscv64: installing 0x2 bytes at an address allocate_code did not return"
        );
        assert_eq!(
            memory_error(code.check_install(base, 9)).1,
            "riscv64: 0x9 bytes do not fit the 0x8 bytes allocated"
        );
        assert_eq!(code.check_install(base, 8), Ok(8));
        assert!(!code.is_installed_code(base));
        code.mark_installed(base);
        assert_eq!(
            memory_error(code.check_install(base, 8)).1,
            "riscv64: code is already installed here (install_code runs once per region)"
        );
        assert!(code.is_installed_code(base));
        assert!(code.is_installed_code(base + 7));
        assert!(!code.is_installed_code(base + 8));
        assert!(!code.is_installed_code(base - 1));
    }

    #[test]
    fn data_regions_are_whole_pages() {
        let mut data = DataRegions::new(Arch::S390x, 0x8000, 0xa000, 0x1000);
        assert_eq!(data.pages(0), 0x1000);
        assert_eq!(data.pages(0x1001), 0x2000);
        let mut mapped = Vec::new();
        let mut map = recording(&mut mapped);
        assert_eq!(data.allocate(0, 8, &mut map), Ok(0x8000));
        assert_eq!(data.allocate(5, 0x1000, &mut map), Ok(0x9000));
        drop(map);
        assert_eq!(mapped, [(0x8000, 0x1000), (0x9000, 0x1000)]);
        assert_eq!(
            memory_error(data.allocate(1, 8, |_, _| Ok(()))),
            (
                0xa000,
                "s390x: data region exhausted allocating 0x1 bytes (limit 0xa000)".into()
            )
        );
        assert_eq!(
            memory_error(data.allocate(1, 3, |_, _| Ok(()))),
            (0, "s390x: data alignment 3 (at most 0x1000)".into())
        );
        assert_eq!(
            memory_error(data.allocate(1, 0x2000, |_, _| Ok(()))).1,
            "s390x: data alignment 8192 (at most 0x1000)"
        );
    }

    #[test]
    fn data_is_installed_inside_allocated_pages() {
        let mut data = DataRegions::new(Arch::X86_64, 0x8000, 0xa000, 0x1000);
        assert!(data.check_install(0x8000, 1).is_err());
        data.allocate(16, 8, |_, _| Ok(())).unwrap();
        assert_eq!(data.check_install(0x8000, 0x1000), Ok(()));
        assert_eq!(
            memory_error(data.check_install(0x8ff0, 0x11)),
            (
                0x8ff0,
                "x86_64: installing 0x11 bytes outside allocated data 0x8000..0x9000".into()
            )
        );
        assert!(data.check_install(0x7fff, 1).is_err());
        assert!(data.check_install(u64::MAX, 2).is_err());
    }
}
