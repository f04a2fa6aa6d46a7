//! The frame-pointer unwinder and the throw service.
//!
//! A throw arrives as a register context filled by the ISA's throw stub (see
//! [`crate::isa::IsaSpec`]). [`throw`] walks frames through a [`Memory`] —
//! restoring, frame by frame, the callee-saved registers each skipped
//! function saved — finds the handler, and rewrites the context into the
//! resume state the resume stub installs.

mod cursor;
mod policy;
#[cfg(feature = "sabotage")]
mod sabotage;

#[cfg(feature = "sabotage")]
pub use sabotage::{Sabotage, set_sabotage};

use crate::abi::{HANDLER_FP_OFFSET, HANDLER_PC_OFFSET, HANDLER_SP_OFFSET};
use crate::error::Error;
use crate::exception_table::{ExceptionTable, FunctionEntry, SiteRef};
use crate::isa::{Arch, context};
use crate::memory::Memory;
use cursor::{Frame, FrameCursor};
use policy::{Catch, Search};

/// Frames walked before the unwinder gives up (a guard against a corrupted
/// chain that still increases monotonically).
pub const MAX_FRAMES: usize = 1 << 20;

/// The arguments JIT code passed to `__cranelift_throw`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrowRequest {
    /// Frame-pointer value of the frame the walk must not enter.
    pub entry_fp: u64,
    /// Frame-pointer value of the frame the search starts in.
    pub exit_fp: u64,
    /// A pc in the exit frame (informational: the walk uses the return
    /// addresses it finds in the frames themselves).
    pub exit_pc: u64,
    /// Exception tag.
    pub tag: u32,
    /// Payloads delivered in the two payload registers.
    pub payloads: [u64; 2],
}

/// Where an exception went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A handler in JIT code between the exit and the entry frame caught it.
    Caught {
        /// Handler address.
        pc: u64,
        /// Stack pointer installed.
        sp: u64,
        /// Frame-pointer value of the catching frame.
        fp: u64,
    },
    /// No handler caught it: it went to the catch-all of the innermost entry
    /// trampoline, which reports it to the host.
    Uncaught {
        /// Handler address in the entry trampoline.
        pc: u64,
        /// Stack pointer installed.
        sp: u64,
        /// Frame-pointer value of the trampoline frame.
        fp: u64,
    },
}

/// Most words a context has: the fixed words plus the largest ISA's
/// callee-saved registers (riscv64: 23).
const MAX_CONTEXT_WORDS: usize = context::SAVED + 24;

/// A copy of a register context in target memory (for memory that is not
/// the host's own; see [`throw`]).
struct Context {
    words: [u64; MAX_CONTEXT_WORDS],
    len: usize,
}

impl Context {
    /// Fill this context from `addr` (in place: a context is a few hundred
    /// bytes, and the throw path should not copy it around).
    fn load(&mut self, memory: &dyn Memory, arch: Arch, addr: u64) -> Result<(), Error> {
        let len = context::SAVED + arch.spec().callee_saved().len();
        if len > MAX_CONTEXT_WORDS {
            return Err(Error::Unwind(format!(
                "{arch} context of {len} words exceeds {MAX_CONTEXT_WORDS}"
            )));
        }
        self.len = len;
        memory.read(addr, self.bytes_mut())?;
        let endianness = memory.endianness();
        if !endianness.is_native() {
            for word in &mut self.words[..len] {
                *word = endianness.read_u64(word.to_ne_bytes());
            }
        }
        Ok(())
    }

    /// The first `len` words as bytes (in memory order).
    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len * 8;
        // SAFETY: `words` is `MAX_CONTEXT_WORDS * 8` initialised bytes and
        // `len` never exceeds that; any byte pattern is a valid `u64`.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), len) }
    }

    /// The first `len` words as bytes, in the host's byte order.
    fn bytes(&self) -> &[u8] {
        // SAFETY: as in `bytes_mut`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len * 8) }
    }

    /// Write the context back to `addr` (one write of the whole block).
    fn write(&self, memory: &mut dyn Memory, addr: u64) -> Result<(), Error> {
        let endianness = memory.endianness();
        if endianness.is_native() {
            return memory.write(addr, self.bytes());
        }
        let mut image = Context {
            words: [0; MAX_CONTEXT_WORDS],
            len: self.len,
        };
        for (out, word) in image.words.iter_mut().zip(&self.words[..self.len]) {
            *out = u64::from_ne_bytes(endianness.write_u64(*word));
        }
        memory.write(addr, image.bytes())
    }
}

/// The throw arguments the stub captured in `ctx`.
fn request(ctx: &impl ContextWords) -> ThrowRequest {
    let arg = |i| ctx.get(context::ARGS + i);
    ThrowRequest {
        entry_fp: arg(0),
        exit_fp: arg(1),
        exit_pc: arg(2),
        tag: arg(3) as u32,
        payloads: [arg(4), arg(5)],
    }
}

/// Word access to the throw context during a walk: in place for the host's
/// own memory, on a copy for an emulator's.
trait ContextWords {
    fn get(&self, index: usize) -> u64;
    fn set(&mut self, index: usize, value: u64);
}

impl ContextWords for Context {
    #[inline]
    fn get(&self, index: usize) -> u64 {
        self.words[index]
    }
    #[inline]
    fn set(&mut self, index: usize, value: u64) {
        self.words[index] = value;
    }
}

/// A context of `len` words at `base` in host memory.
struct InPlace {
    base: *mut u64,
    len: usize,
}

impl ContextWords for InPlace {
    #[inline]
    fn get(&self, index: usize) -> u64 {
        assert!(index < self.len);
        // SAFETY: `throw` checked that the `len` words at `base` lie inside
        // the `HostMemory` of the throw, which is live, writable memory.
        unsafe { self.base.add(index).read_unaligned() }
    }
    #[inline]
    fn set(&mut self, index: usize, value: u64) {
        assert!(index < self.len);
        // SAFETY: as in `get`.
        unsafe { self.base.add(index).write_unaligned(value) }
    }
}

/// Handle a throw: walk from the context captured at `context_addr`, find the
/// handler, and rewrite the context into its resume state.
///
/// The search follows upstream's `__cranelift_throw`: it starts in the frame
/// whose frame-pointer value is `exit_fp` and stops before the frame whose
/// value is `entry_fp`. Past that point (or if the walk reaches an entry
/// trampoline first) the exception is uncaught and goes to the innermost entry
/// trampoline's catch-all.
///
/// On host memory ([`Memory::host_view`]) the walk reads frames and the
/// context in place, without a virtual call per word; elsewhere it reads the
/// context once and writes it back once. After an `Err` the context's
/// callee-saved words may have been partly restored (an entry trampoline's
/// handler, where failures go, needs none of them).
pub fn throw(
    arch: Arch,
    table: &ExceptionTable,
    memory: &mut dyn Memory,
    context_addr: u64,
) -> Result<(ThrowRequest, Delivery), Error> {
    let len = context::SAVED + arch.spec().callee_saved().len();
    if let Some(host) = memory.host_view() {
        if len > MAX_CONTEXT_WORDS || !host.contains(context_addr, len * 8) {
            return Err(Error::Memory {
                address: context_addr,
                message: format!("a {len}-word throw context does not fit there"),
            });
        }
        let mut ctx = InPlace {
            base: context_addr as *mut u64,
            len,
        };
        return walk(arch, table, &host, &mut ctx);
    }
    let mut ctx = Context {
        words: [0; MAX_CONTEXT_WORDS],
        len: 0,
    };
    ctx.load(memory, arch, context_addr)?;
    let result = walk(arch, table, &*memory, &mut ctx)?;
    ctx.write(memory, context_addr)?;
    Ok(result)
}

/// Walk from the frame the context names to the handler that takes the
/// throw (a [`FrameCursor`] steps, the [`Search`] policy chooses), then
/// rewrite the context into that handler's resume state.
fn walk<M: Memory + ?Sized, C: ContextWords>(
    arch: Arch,
    table: &ExceptionTable,
    memory: &M,
    ctx: &mut C,
) -> Result<(ThrowRequest, Delivery), Error> {
    let request = request(ctx);
    let restore = restores_callee_saves();
    let mut search = Search::new(&request);
    let mut cursor = FrameCursor::new(
        arch,
        table,
        memory,
        ctx.get(context::PC),
        ctx.get(context::FP),
    );
    for frames_left in 0..MAX_FRAMES {
        search.enter(cursor.fp);
        let frame = cursor.frame()?;
        if let Frame::CallSite(site) = frame {
            let function = site.function();
            if let Some(catch) = search.catch(function, site) {
                let delivery = resume(
                    arch,
                    ctx,
                    &request,
                    function,
                    site,
                    catch,
                    cursor.fp,
                    frames_left,
                )?;
                return Ok((request, delivery));
            }
        }
        cursor.step(frame, ctx, restore)?;
    }
    Err(Error::Unwind(format!("more than {MAX_FRAMES} frames")))
}

/// Rewrite `ctx` to resume at `catch`, a handler of `site` in `function`
/// whose frame's frame-pointer value is `fp`, with the request's payloads;
/// `frames_left` frames were left before it.
#[allow(clippy::too_many_arguments)]
#[inline]
fn resume<C: ContextWords>(
    arch: Arch,
    ctx: &mut C,
    request: &ThrowRequest,
    function: &FunctionEntry,
    site: SiteRef<'_>,
    catch: Catch,
    fp: u64,
    frames_left: usize,
) -> Result<Delivery, Error> {
    let frame_offset = site.frame_offset().ok_or_else(|| {
        Error::Unwind(format!(
            "call site {}+{:#x} has handlers but no frame offset",
            function.name,
            site.return_offset()
        ))
    })?;
    let target = function.start + u64::from(catch.offset);
    let sp = fp - u64::from(frame_offset);
    ctx.set(context::PC, target);
    ctx.set(context::SP, sp);
    ctx.set(context::FP, fp);
    ctx.set(context::PAYLOAD0, request.payloads[0]);
    ctx.set(context::PAYLOAD1, request.payloads[1]);
    // The throw stub's return address and one per frame left, when the
    // return-address predictor holds them all.
    let abandoned = frames_left + 1;
    let drops = if abandoned <= arch.spec().return_stack_depth() {
        abandoned
    } else {
        0
    };
    ctx.set(context::RETURN_STACK_DROPS, drops as u64);
    Ok(if catch.caught {
        Delivery::Caught { pc: target, sp, fp }
    } else {
        Delivery::Uncaught { pc: target, sp, fp }
    })
}

/// Whether skipped frames' callee-saved registers are restored (always,
/// unless the `CalleeSavedRestore` sabotage is on).
#[inline]
fn restores_callee_saves() -> bool {
    #[cfg(feature = "sabotage")]
    {
        !sabotage::on(Sabotage::CalleeSavedRestore)
    }
    #[cfg(not(feature = "sabotage"))]
    {
        true
    }
}

/// The O(1) delivery from a throw stub: rewrite the throw context at
/// `context_addr` to resume at the handler the innermost entry trampoline
/// recorded in the header of its buffer at `buffer` (see
/// [`crate::trampoline`]), with `payloads` in the payload registers. No
/// frame is walked; the trampoline's handler needs nothing but its frame,
/// and the host's call of the trampoline treats every register as
/// clobbered, so no other state is due. (JIT code that throws to the entry
/// itself does not get here: its stub jumps to the handler record directly.)
pub fn to_entry(
    memory: &mut dyn Memory,
    context_addr: u64,
    buffer: u64,
    payloads: [u64; 2],
) -> Result<(), Error> {
    let handler = |memory: &dyn Memory| -> Result<[u64; 3], Error> {
        let word = |offset: i32| memory.read_u64(buffer.wrapping_add_signed(i64::from(offset)));
        Ok([
            word(HANDLER_PC_OFFSET)?,
            word(HANDLER_SP_OFFSET)?,
            word(HANDLER_FP_OFFSET)?,
        ])
    };
    if let Some(host) = memory.host_view() {
        if !host.contains(context_addr, TO_ENTRY_WORDS * 8) {
            return Err(Error::Memory {
                address: context_addr,
                message: "a throw context does not fit there".into(),
            });
        }
        let handler = handler(&host)?;
        let mut ctx = InPlace {
            base: context_addr as *mut u64,
            len: TO_ENTRY_WORDS,
        };
        rewrite_to_entry(&mut ctx, handler, payloads);
        return Ok(());
    }
    let handler = handler(&*memory)?;
    // Nothing to read: `rewrite_to_entry` sets every one of these words.
    let mut ctx = Context {
        words: [0; MAX_CONTEXT_WORDS],
        len: TO_ENTRY_WORDS,
    };
    rewrite_to_entry(&mut ctx, handler, payloads);
    ctx.write(memory, context_addr)
}

/// Words of a throw context that [`to_entry`] rewrites, all of them: the
/// fixed ones and the return-stack drop count (the last).
const TO_ENTRY_WORDS: usize = context::RETURN_STACK_DROPS + 1;

/// Rewrite `ctx` to resume at the entry trampoline's `handler` (pc, sp,
/// fp) with `payloads`.
fn rewrite_to_entry(ctx: &mut impl ContextWords, handler: [u64; 3], payloads: [u64; 2]) {
    let [pc, sp, fp] = handler;
    ctx.set(context::PC, pc);
    ctx.set(context::SP, sp);
    ctx.set(context::FP, fp);
    ctx.set(context::PAYLOAD0, payloads[0]);
    ctx.set(context::PAYLOAD1, payloads[1]);
    // How many frames lie in between is not known without a walk: no
    // return-address predictor entries are dropped.
    ctx.set(context::RETURN_STACK_DROPS, 0);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::compile::{CallSite, Handler};
    use crate::exception_table::FunctionEntry;
    use crate::isa::{Endianness, Reg, SavedRegister};
    use crate::memory::HostMemory;

    /// Sparse little-endian memory: unset bytes read as an error.
    #[derive(Default)]
    struct FakeMemory(BTreeMap<u64, u8>);

    impl Memory for FakeMemory {
        fn endianness(&self) -> Endianness {
            Endianness::Little
        }
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = *self.0.get(&(addr + i as u64)).ok_or(Error::Memory {
                    address: addr,
                    message: "unmapped".into(),
                })?;
            }
            Ok(())
        }
        fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), Error> {
            for (i, b) in data.iter().enumerate() {
                self.0.insert(addr + i as u64, *b);
            }
            Ok(())
        }
    }

    const X19: Reg = Reg::int(19);
    const D8: Reg = Reg::float(8);
    const CTX: u64 = 0x9000;
    const A_FP: u64 = 0x8200;
    const B_FP: u64 = 0x8100;

    fn function(
        name: &str,
        start: u64,
        sites: Vec<CallSite>,
        saved: Vec<SavedRegister>,
    ) -> (FunctionEntry, Vec<CallSite>) {
        let entry = FunctionEntry {
            name: name.into(),
            start,
            end: start + 0x100,
            traps: Vec::new(),
            restore: crate::exception_table::restore_slots(Arch::Aarch64, &saved),
            saved_registers: saved,
            kind: crate::compile::FunctionKind::Code,
            has_handler_sites: false,
        };
        (entry, sites)
    }

    /// aarch64 frames: `%a` (handler for tag 1 at +0x80) calls `%b`, which
    /// called the throw stub. `%b` saved `%a`'s x19 and d8; the return
    /// address into `%a` is stored signed, as `sign_return_address` leaves it.
    fn scene(b_links_to: u64, entry_fp: u64) -> (ExceptionTable, FakeMemory) {
        let a = function(
            "%a",
            0x1000,
            vec![CallSite {
                return_offset: 0x20,
                frame_offset: Some(0x30),
                handlers: vec![Handler::Tag {
                    tag: 1,
                    offset: 0x80,
                }],
            }],
            vec![],
        );
        let b = function(
            "%b",
            0x2000,
            vec![CallSite {
                return_offset: 0x10,
                frame_offset: None,
                handlers: vec![],
            }],
            vec![
                SavedRegister {
                    reg: X19,
                    fp_offset: -16,
                },
                SavedRegister {
                    reg: D8,
                    fp_offset: -24,
                },
            ],
        );
        let mut m = FakeMemory::default();
        m.write_u64(B_FP, b_links_to).unwrap();
        m.write_u64(B_FP + 8, 0x002a_0000_0000_1020).unwrap(); // signed 0x1020
        m.write_u64(B_FP - 16, 7).unwrap();
        m.write_u64(B_FP - 24, 8).unwrap();
        m.write_u64(A_FP, A_FP + 0x100).unwrap(); // %a's caller: the host
        m.write_u64(A_FP + 8, 0x5).unwrap();
        let spec = Arch::Aarch64.spec();
        let words = context::SAVED + spec.callee_saved().len();
        for i in 0..words {
            m.write_u64(CTX + 8 * i as u64, 0).unwrap();
        }
        m.write_u64(CTX + 8 * context::PC as u64, 0x2010).unwrap();
        m.write_u64(CTX + 8 * context::FP as u64, B_FP).unwrap();
        let args = [entry_fp, B_FP, 0, 1, 0x11, 0x22];
        for (i, v) in args.iter().enumerate() {
            m.write_u64(CTX + 8 * (context::ARGS + i) as u64, *v)
                .unwrap();
        }
        for (i, reg) in spec.callee_saved().iter().enumerate() {
            let value = if *reg == X19 {
                111
            } else if *reg == D8 {
                222
            } else {
                1000 + i as u64
            };
            m.write_u64(CTX + 8 * (context::SAVED + i) as u64, value)
                .unwrap();
        }
        (ExceptionTable::new(vec![a, b]).unwrap(), m)
    }

    fn saved(m: &FakeMemory, reg: Reg) -> u64 {
        let i = Arch::Aarch64
            .spec()
            .callee_saved()
            .iter()
            .position(|r| *r == reg)
            .unwrap();
        m.read_u64(CTX + 8 * (context::SAVED + i) as u64).unwrap()
    }

    #[test]
    fn walk_strips_signed_return_addresses_and_restores_saved_registers() {
        let (table, mut m) = scene(A_FP, 0);
        let (request, delivery) = throw(Arch::Aarch64, &table, &mut m, CTX).unwrap();
        assert_eq!(request.tag, 1);
        assert_eq!(
            delivery,
            Delivery::Caught {
                pc: 0x1080,
                sp: A_FP - 0x30,
                fp: A_FP
            }
        );
        let word = |i: usize| m.read_u64(CTX + 8 * i as u64).unwrap();
        assert_eq!(
            [word(context::PC), word(context::SP), word(context::FP)],
            [0x1080, A_FP - 0x30, A_FP]
        );
        assert_eq!(
            [word(context::PAYLOAD0), word(context::PAYLOAD1)],
            [0x11, 0x22]
        );
        assert_eq!(
            (saved(&m, X19), saved(&m, D8)),
            (7, 8),
            "restored from %b's frame"
        );
        assert_eq!(saved(&m, Reg::int(20)), 1001, "not saved by %b: unchanged");
    }

    /// Walk hints are only first guesses: stale ones (another function,
    /// or none) change nothing, and a frame found by search becomes the
    /// next walk's guess for its depth.
    #[test]
    fn stale_walk_hints_change_nothing() {
        for hint in [0, 1, usize::MAX] {
            let (table, mut m) = scene(A_FP, 0);
            for depth in 0..4 {
                table.set_walk_hint(depth, hint);
            }
            let (_, delivery) = throw(Arch::Aarch64, &table, &mut m, CTX).unwrap();
            assert_eq!(
                delivery,
                Delivery::Caught {
                    pc: 0x1080,
                    sp: A_FP - 0x30,
                    fp: A_FP
                },
                "hint {hint}"
            );
            assert_eq!((saved(&m, X19), saved(&m, D8)), (7, 8), "hint {hint}");
            // %b (index 1), the first frame, has no handler sites; %a,
            // the second, is found by its call site.
            assert_eq!(table.walk_hint(0), 1, "hint {hint}");
            assert_eq!(table.walk_hint(1), hint, "hint {hint}");
        }
    }

    /// The scene's stack words (0x8000 up to the end of the context) copied
    /// into host memory as native words, the addresses among them moved
    /// to where the copy lies; and the copy's base address.
    fn host_copy(m: &FakeMemory) -> (Vec<u64>, u64) {
        const LOW: u64 = 0x8000;
        let words = context::SAVED + Arch::Aarch64.spec().callee_saved().len();
        let high = CTX + 8 * words as u64;
        let mut copy = vec![0u64; ((high - LOW) / 8) as usize];
        let base = copy.as_ptr() as u64;
        for (i, word) in copy.iter_mut().enumerate() {
            let value = m.read_u64(LOW + 8 * i as u64).unwrap_or(0);
            *word = if (LOW..high).contains(&value) {
                value - LOW + base
            } else {
                value
            };
        }
        (copy, base)
    }

    /// On host memory a frame's words are read after one check of the
    /// frame's whole window: the same walk, the same restores; a window
    /// reaching outside the memory is an error naming the address.
    #[test]
    fn a_walk_on_host_memory_checks_each_frame_once() {
        let (table, m) = scene(A_FP, 0);
        let (copy, base) = host_copy(&m);
        let at = |addr: u64| addr - 0x8000 + base;
        let len = 8 * copy.len() as u64;
        // SAFETY: `copy` is live and ours for the whole walk.
        let mut host = unsafe { HostMemory::new([(base, base + len), (0, 0)]) };
        let (_, delivery) = throw(Arch::Aarch64, &table, &mut host, at(CTX)).unwrap();
        assert_eq!(
            delivery,
            Delivery::Caught {
                pc: 0x1080,
                sp: at(A_FP) - 0x30,
                fp: at(A_FP)
            }
        );
        let spec = Arch::Aarch64.spec();
        let saved = |reg: Reg| {
            let i = spec.callee_saved().iter().position(|r| *r == reg).unwrap();
            copy[((CTX - 0x8000) / 8) as usize + context::SAVED + i]
        };
        assert_eq!((saved(X19), saved(D8)), (7, 8), "restored from %b's frame");
        assert_eq!(saved(Reg::int(20)), 1001, "not saved by %b: unchanged");

        // Memory that starts just above %b's lowest saved slot (d8, at
        // fp - 24), or ends just below its return address (fp + 8): the
        // check of the window (fp - 24 to fp + 16) refuses the frame.
        let end = 0x8000 + len;
        for (low, high) in [(B_FP - 16, end), (0x8000, B_FP + 8)] {
            let (table, m) = scene(A_FP, 0);
            let (_copy, base) = host_copy(&m);
            let at = |addr: u64| addr - 0x8000 + base;
            // SAFETY: as above (parts of `_copy`).
            let mut host = unsafe { HostMemory::new([(at(low), at(high)), (at(CTX), base + len)]) };
            let err = throw(Arch::Aarch64, &table, &mut host, at(CTX)).unwrap_err();
            assert!(
                matches!(err, Error::Memory { address, .. } if address == at(B_FP - 24)),
                "{low:#x}..{high:#x}: {err}"
            );
        }
    }

    /// The O(1) delivery rewrites the first words of the context, all
    /// of them, and leaves the rest (the arguments after the drop count,
    /// the saved registers) as the stub captured them: on an emulator's
    /// memory (a copy written back) and in place on host memory.
    #[test]
    fn to_entry_rewrites_the_fixed_words_only() {
        // The first argument word, where the drop count goes, starts non-zero.
        let (_, mut m) = scene(A_FP, 0x1234);
        let buffer = 0x8800;
        for (offset, value) in [
            (HANDLER_PC_OFFSET, 0x3000),
            (HANDLER_SP_OFFSET, 0x7f00),
            (HANDLER_FP_OFFSET, 0x7f40),
        ] {
            m.write_u64(buffer + offset as u64, value).unwrap();
        }
        let words = context::SAVED + Arch::Aarch64.spec().callee_saved().len();
        let read = |m: &dyn Memory, ctx: u64| -> Vec<u64> {
            (0..words)
                .map(|i| m.read_u64(ctx + 8 * i as u64).unwrap())
                .collect()
        };
        let before = read(&m, CTX);
        let expected = [0x3000, 0x7f00, 0x7f40, 0x11, 0x22, 0];

        let (copy, base) = host_copy(&m);
        let at = |addr: u64| addr - 0x8000 + base;
        // SAFETY: `copy` is live and ours while `host` is used.
        let mut host = unsafe { HostMemory::new([(base, base + 8 * copy.len() as u64), (0, 0)]) };
        let before_host = read(&host, at(CTX));
        to_entry(&mut host, at(CTX), at(buffer), [0x11, 0x22]).unwrap();
        to_entry(&mut m, CTX, buffer, [0x11, 0x22]).unwrap();
        for (what, after, before) in [
            ("emulated", read(&m, CTX), before),
            ("host", read(&host, at(CTX)), before_host),
        ] {
            assert_eq!(
                after[..TO_ENTRY_WORDS],
                expected,
                "{what}: pc, sp, fp, payloads, no drops"
            );
            assert_eq!(after[TO_ENTRY_WORDS..], before[TO_ENTRY_WORDS..], "{what}");
        }
    }

    #[test]
    fn the_entry_frame_is_not_searched() {
        let (table, mut m) = scene(A_FP, A_FP);
        // %a is the entry frame: its handler does not count, and above it
        // there is no JIT code (and no entry trampoline).
        let err = throw(Arch::Aarch64, &table, &mut m, CTX).unwrap_err();
        assert!(
            matches!(err, Error::Unwind(ref m) if m.contains("not in JIT code")),
            "{err}"
        );
    }

    #[test]
    fn a_chain_that_does_not_grow_is_an_error() {
        let (table, mut m) = scene(B_FP - 0x40, 0);
        let err = throw(Arch::Aarch64, &table, &mut m, CTX).unwrap_err();
        assert!(
            matches!(err, Error::Unwind(ref m) if m.contains("does not grow")),
            "{err}"
        );
    }

    /// x86_64: `%b` calls the throw stub `skipped` frames below `%a`, whose
    /// handler catches. The resume word counts the abandoned calls (the
    /// stub's and one per `%b` frame) while the predictor can hold them.
    fn return_stack_drops(skipped: usize) -> u64 {
        let site = |return_offset, handlers: Vec<Handler>| CallSite {
            return_offset,
            frame_offset: Some(0x10),
            handlers,
        };
        let a = function(
            "%a",
            0x1000,
            vec![site(0x20, vec![Handler::Default { offset: 0x80 }])],
            vec![],
        );
        let b = function(
            "%b",
            0x2000,
            vec![site(0x10, vec![]), site(0x30, vec![])],
            vec![],
        );
        let table = ExceptionTable::new(vec![a, b]).unwrap();
        let fp = |i: usize| 0x4000 + 0x100 * i as u64;
        let mut m = FakeMemory::default();
        for i in 0..skipped {
            let caller = if i + 1 < skipped { 0x2010 } else { 0x1020 };
            m.write_u64(fp(i), fp(i + 1)).unwrap();
            m.write_u64(fp(i) + 8, caller).unwrap();
        }
        let words = context::SAVED + Arch::X86_64.spec().callee_saved().len();
        for i in 0..words {
            m.write_u64(CTX + 8 * i as u64, 0).unwrap();
        }
        // The stub was called from `%b`, or from `%a` itself.
        let pc = if skipped == 0 { 0x1020 } else { 0x2030 };
        let exit_fp = fp(0);
        m.write_u64(CTX + 8 * context::PC as u64, pc).unwrap();
        m.write_u64(CTX + 8 * context::FP as u64, exit_fp).unwrap();
        let args = [fp(skipped) + 0x100, exit_fp, 0, 1, 0x11, 0x22];
        for (i, v) in args.iter().enumerate() {
            m.write_u64(CTX + 8 * (context::ARGS + i) as u64, *v)
                .unwrap();
        }
        let (_, delivery) = throw(Arch::X86_64, &table, &mut m, CTX).unwrap();
        assert_eq!(
            delivery,
            Delivery::Caught {
                pc: 0x1080,
                sp: fp(skipped) - 0x10,
                fp: fp(skipped)
            }
        );
        m.read_u64(CTX + 8 * context::RETURN_STACK_DROPS as u64)
            .unwrap()
    }

    #[test]
    fn resume_drops_the_abandoned_calls_while_the_predictor_holds_them() {
        let depth = Arch::X86_64.spec().return_stack_depth() as u64;
        assert!(depth > 1);
        for skipped in 0..=depth as usize + 2 {
            let abandoned = skipped as u64 + 1;
            let expected = if abandoned <= depth { abandoned } else { 0 };
            assert_eq!(
                return_stack_drops(skipped),
                expected,
                "{skipped} frames skipped"
            );
        }
        // Aarch64's resume stub drops nothing: the word says so.
        assert_eq!(Arch::Aarch64.spec().return_stack_depth(), 0);
        let (table, mut m) = scene(A_FP, 0);
        throw(Arch::Aarch64, &table, &mut m, CTX).unwrap();
        assert_eq!(
            m.read_u64(CTX + 8 * context::RETURN_STACK_DROPS as u64)
                .unwrap(),
            0
        );
    }
}
