//! Where a worker is — its test step (kind and target) and run line —
//! shared with its parent without a message per step: a page of memory both
//! map (a Linux `memfd`). The worker stores each step and line before it
//! starts; the parent reads them when the worker hangs or dies, and watches
//! their sequence numbers to time each step. Elsewhere the worker sends
//! them over its pipe instead.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::supervise::Step;

/// Word 0: run line sequence; 1: packed run line; 2: test step sequence
/// (a seqlock: odd while being written; halved, the number of steps); 3:
/// the step text's length; then the text.
const HEADER: usize = 4;
/// Room for the step's text, in words.
const TEXT_WORDS: usize = 60;
const WORDS: usize = HEADER + TEXT_WORDS;

/// A run line as the slot holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLine {
    /// How many test steps the worker had announced when the line started.
    pub tests: u64,
    /// The line's number.
    pub line: usize,
}

const LINE_BITS: u32 = 40;

impl SlotLine {
    fn pack(self) -> u64 {
        ((self.tests & 0xff_ffff) << LINE_BITS) | (self.line as u64 & ((1 << LINE_BITS) - 1))
    }

    fn unpack(word: u64) -> Self {
        SlotLine {
            tests: word >> LINE_BITS,
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

    /// Worker: a test step starts: its kind and target label (cut to the
    /// room there is). Returns the number of steps so far.
    pub fn store_step(&self, kind: &str, target: Option<&str>) -> u64 {
        let mut text = kind.as_bytes().to_vec();
        if let Some(target) = target {
            text.push(0);
            text.extend_from_slice(target.as_bytes());
        }
        text.truncate(TEXT_WORDS * 8);
        let sequence = self.word(2).fetch_add(1, Ordering::Relaxed) + 1;
        fence(Ordering::Release);
        self.word(3).store(text.len() as u64, Ordering::Relaxed);
        for (i, chunk) in text.chunks(8).enumerate() {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            self.word(HEADER + i)
                .store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        self.word(2).store(sequence + 1, Ordering::Release);
        sequence.div_ceil(2)
    }

    /// Parent: the step sequence number, and the step (kind and target)
    /// unless it is being written (a worker that died mid-write).
    pub fn load_step(&self) -> (u64, Option<Step>) {
        for _ in 0..1000 {
            let before = self.word(2).load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let len = (self.word(3).load(Ordering::Relaxed) as usize).min(TEXT_WORDS * 8);
            let mut text = Vec::with_capacity(len);
            for i in 0..len.div_ceil(8) {
                text.extend_from_slice(
                    &self.word(HEADER + i).load(Ordering::Relaxed).to_le_bytes(),
                );
            }
            text.truncate(len);
            fence(Ordering::Acquire);
            if self.word(2).load(Ordering::Relaxed) != before {
                continue;
            }
            if before == 0 {
                return (0, None);
            }
            let text = String::from_utf8_lossy(&text);
            let step = match text.split_once('\0') {
                Some((kind, target)) => (kind.to_string(), Some(target.to_string())),
                None => (text.into_owned(), None),
            };
            return (before, Some(step));
        }
        (self.word(2).load(Ordering::Relaxed), None)
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
            SlotLine { tests: 0, line: 0 },
            SlotLine {
                tests: 0xff_ffff,
                line: (1 << LINE_BITS) - 1,
            },
            SlotLine {
                tests: 7,
                line: 12345,
            },
        ] {
            assert_eq!(SlotLine::unpack(line.pack()), line);
        }
        let wrapped = SlotLine {
            tests: 0x100_0003,
            line: 1,
        };
        assert!(SlotLine::unpack(wrapped.pack()).in_step(0x100_0003));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_second_mapping_sees_the_stores() {
        use std::os::fd::AsRawFd;
        let (parent, fd) = Slot::create().unwrap();
        let child = Slot::map(fd.as_raw_fd()).unwrap();
        let line = SlotLine { tests: 3, line: 42 };
        let (before, _) = parent.load();
        child.store(line);
        let (after, seen) = parent.load();
        assert_eq!((after, seen), (before + 1, line));
        assert_eq!(parent.load_step(), (0, None));
        assert_eq!(child.store_step("run", Some("riscv64 has_c")), 1);
        assert_eq!(
            parent.load_step(),
            (2, Some(("run".into(), Some("riscv64 has_c".into()))))
        );
        let long = "x".repeat(1000);
        assert_eq!(child.store_step(&long, None), 2);
        let (sequence, step) = parent.load_step();
        assert_eq!(sequence, 4);
        assert_eq!(step.unwrap().0.len(), TEXT_WORDS * 8);
    }
}
