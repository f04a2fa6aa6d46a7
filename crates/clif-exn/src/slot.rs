//! Where a worker's run line is, shared with its parent without a message
//! per line: a page of memory both map (a Linux `memfd`). The worker stores
//! the line before running it; the parent reads it when the worker hangs or
//! dies, and watches its sequence number to time each line. Elsewhere the
//! worker sends each line over its pipe instead.

use std::sync::atomic::{AtomicU64, Ordering};

/// The shared words: `[sequence, packed line]`.
const WORDS: usize = 2;

/// A run line as the slot holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLine {
    /// How many test steps the worker had announced when the line started.
    pub tests: u64,
    /// The line's number.
    pub line: usize,
    /// Whether it runs emulated.
    pub emulated: bool,
}

const LINE_BITS: u32 = 39;

impl SlotLine {
    fn pack(self) -> u64 {
        ((self.tests & 0xff_ffff) << (LINE_BITS + 1))
            | (u64::from(self.emulated) << LINE_BITS)
            | (self.line as u64 & ((1 << LINE_BITS) - 1))
    }

    fn unpack(word: u64) -> Self {
        SlotLine {
            tests: word >> (LINE_BITS + 1),
            emulated: (word >> LINE_BITS) & 1 == 1,
            line: (word & ((1 << LINE_BITS) - 1)) as usize,
        }
    }

    /// Whether the line belongs to the `tests`th test step (counted the
    /// same way, modulo the packed width).
    pub fn in_step(&self, tests: u64) -> bool {
        self.tests == tests & 0xff_ffff
    }
}

/// A mapping of the shared page.
pub struct Slot {
    words: *const AtomicU64,
}

// SAFETY: the mapping is only accessed through atomics and lives as long as
// the Slot.
unsafe impl Send for Slot {}
// SAFETY: as above.
unsafe impl Sync for Slot {}

impl Slot {
    /// A new shared page and its descriptor, to be inherited by one child
    /// (close it once the child has started).
    #[cfg(target_os = "linux")]
    pub fn create() -> std::io::Result<(Slot, std::os::fd::OwnedFd)> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: memfd_create with a static name; the descriptor is owned
        // by the returned OwnedFd. No MFD_CLOEXEC: the child inherits it.
        let fd = unsafe { libc::memfd_create(c"clif-exn-progress".as_ptr(), 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let size = (WORDS * 8) as libc::off_t;
        // SAFETY: ftruncate on our own descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let slot = Slot::map(fd.as_raw_fd())?;
        Ok((slot, fd))
    }

    /// Map the page behind an inherited descriptor.
    #[cfg(target_os = "linux")]
    pub fn map(fd: i32) -> std::io::Result<Slot> {
        // SAFETY: a shared mapping of WORDS words of a descriptor whose
        // size is at least that (set by the parent); unmapped on drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                WORDS * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Slot {
            words: ptr as *const AtomicU64,
        })
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        assert!(index < WORDS);
        // SAFETY: index is within the mapping, which is aligned (page) and
        // lives as long as self.
        unsafe { &*self.words.add(index) }
    }

    /// Worker: a run line starts.
    pub fn store(&self, line: SlotLine) {
        self.word(1).store(line.pack(), Ordering::Relaxed);
        self.word(0).fetch_add(1, Ordering::Release);
    }

    /// Parent: the sequence number (changes with each line) and the line.
    pub fn load(&self) -> (u64, SlotLine) {
        let sequence = self.word(0).load(Ordering::Acquire);
        (
            sequence,
            SlotLine::unpack(self.word(1).load(Ordering::Relaxed)),
        )
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        // SAFETY: the mapping made in `map`, no longer referenced.
        unsafe {
            libc::munmap(self.words as *mut libc::c_void, WORDS * 8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_pack_and_unpack() {
        for line in [
            SlotLine {
                tests: 0,
                line: 0,
                emulated: false,
            },
            SlotLine {
                tests: 0xff_ffff,
                line: (1 << LINE_BITS) - 1,
                emulated: true,
            },
            SlotLine {
                tests: 7,
                line: 12345,
                emulated: true,
            },
        ] {
            assert_eq!(SlotLine::unpack(line.pack()), line);
        }
        let wrapped = SlotLine {
            tests: 0x100_0003,
            line: 1,
            emulated: false,
        };
        assert!(SlotLine::unpack(wrapped.pack()).in_step(0x100_0003));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_second_mapping_sees_the_stores() {
        use std::os::fd::AsRawFd;
        let (parent, fd) = Slot::create().unwrap();
        let child = Slot::map(fd.as_raw_fd()).unwrap();
        let line = SlotLine {
            tests: 3,
            line: 42,
            emulated: true,
        };
        let (before, _) = parent.load();
        child.store(line);
        let (after, seen) = parent.load();
        assert_eq!((after, seen), (before + 1, line));
    }
}
