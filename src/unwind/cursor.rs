//! The frame cursor: where a walk is, what the exception table knows of that
//! frame, and the step to its caller (restoring the callee-saved registers
//! the frame saved, then following the frame-pointer chain).

use super::ContextWords;
use crate::error::Error;
use crate::exception_table::{ExceptionTable, FunctionEntry, SiteRef};
use crate::isa::{Arch, FrameLinks};
use crate::memory::Memory;

/// What a walk knows of a frame from its return address.
#[derive(Clone, Copy)]
pub(super) enum Frame<'t> {
    /// The return address of a call site with handlers.
    CallSite(SiteRef<'t>),
    /// Some other address of this function, such as a plain call's return
    /// address (no handlers here, but the function's saves are restored all
    /// the same).
    Other(&'t FunctionEntry),
}

impl<'t> Frame<'t> {
    /// The frame's function.
    #[inline]
    pub fn function(self) -> &'t FunctionEntry {
        match self {
            Frame::CallSite(site) => site.function(),
            Frame::Other(function) => function,
        }
    }
}

/// A walk's position: the return address `pc` into the frame whose
/// frame-pointer value is `fp`.
pub(super) struct FrameCursor<'a, M: ?Sized> {
    table: &'a ExceptionTable,
    memory: &'a M,
    links: FrameLinks,
    /// The architecture whose frames these are.
    arch: Arch,
    /// The return address into the current frame.
    pub pc: u64,
    /// The current frame's frame-pointer value.
    pub fp: u64,
    /// The function of the last frame looked up by address: a recursion's
    /// frames find theirs without a search.
    last: usize,
    /// Frames looked at so far.
    depth: usize,
}

impl<'a, M: Memory + ?Sized> FrameCursor<'a, M> {
    /// A cursor at the frame `fp` that `pc` returns into.
    #[inline]
    pub fn new(arch: Arch, table: &'a ExceptionTable, memory: &'a M, pc: u64, fp: u64) -> Self {
        FrameCursor {
            table,
            memory,
            links: arch.spec().frame_links(),
            arch,
            pc,
            fp,
            last: usize::MAX,
            depth: 0,
        }
    }

    /// What the exception table knows of the current frame: at most one
    /// probe of the call-site index (none in a function without handler
    /// sites: a recursion's frames), and for any other return address its
    /// function — the last frame's or the table's hint for this depth when
    /// `pc` is in it, else found by binary search (and hinted for the next
    /// walk).
    #[inline]
    pub fn frame(&mut self) -> Result<Frame<'a>, Error> {
        let table = self.table;
        let depth = self.depth;
        self.depth += 1;
        // The call instruction lies before its return address.
        let pc = self.pc.wrapping_sub(1);
        let contains = |i: usize| {
            table
                .functions()
                .get(i)
                .filter(|f| f.start <= pc && pc < f.end)
                .map(|f| (i, f))
        };
        let known = contains(self.last).or_else(|| contains(table.walk_hint(depth)));
        if let Some((i, f)) = known {
            self.last = i;
            if !f.has_handler_sites {
                return Ok(Frame::Other(f));
            }
        }
        if let Some(site) = table.site_at(self.pc) {
            self.last = site.function_index();
            return Ok(Frame::CallSite(site));
        }
        if let Some((_, f)) = known {
            return Ok(Frame::Other(f));
        }
        match table.function_index(pc) {
            Some(i) => {
                self.last = i;
                table.set_walk_hint(depth, i);
                Ok(Frame::Other(&table.functions()[i]))
            }
            None => Err(not_in_jit_code(self.pc, self.fp)),
        }
    }

    /// Leave `frame`, the current one, for its caller: the registers it
    /// saved get their caller's values in `ctx` (when `restore`), then the
    /// cursor moves to the caller's return address and frame. On host
    /// memory the frame's whole window is bounds-checked once.
    #[inline]
    pub fn step<C: ContextWords>(
        &mut self,
        frame: Frame<'a>,
        ctx: &mut C,
        restore: bool,
    ) -> Result<(), Error> {
        let function = frame.function();
        match self.memory.host_view() {
            Some(host) if function.restore.arch == self.arch => {
                let (offset, len) = function.restore.window;
                host.check(self.fp.wrapping_add_signed(offset), len as usize)?;
                // SAFETY: `step_reading` reads only the slots and the frame
                // links, which the window (checked just now) covers.
                self.step_reading(function, ctx, restore, |addr| {
                    Ok(unsafe { host.read_u64_unchecked(addr) })
                })
            }
            _ => {
                let memory = self.memory;
                self.step_reading(function, ctx, restore, |addr| memory.read_u64(addr))
            }
        }
    }

    /// [`FrameCursor::step`] out of a frame of `function`, reading its words
    /// with `read`.
    #[inline(always)]
    fn step_reading<C: ContextWords>(
        &mut self,
        function: &FunctionEntry,
        ctx: &mut C,
        restore: bool,
        read: impl Fn(u64) -> Result<u64, Error>,
    ) -> Result<(), Error> {
        let fp = self.fp;
        if restore {
            for &(word, fp_offset) in &function.restore.slots {
                ctx.set(word, read(fp.wrapping_add_signed(fp_offset))?);
            }
        }
        let links = self.links;
        let next_pc =
            read(fp.wrapping_add_signed(links.return_address_offset))? & links.return_address_mask;
        let next_fp = read(fp.wrapping_add_signed(links.caller_fp_offset))?;
        if next_fp <= fp {
            return Err(chain_shrinks(fp, next_fp, &function.name));
        }
        self.pc = next_pc;
        self.fp = next_fp;
        Ok(())
    }
}

/// A return address `pc` outside every function of the table.
#[cold]
fn not_in_jit_code(pc: u64, fp: u64) -> Error {
    Error::Unwind(format!(
        "return address {pc:#x} (frame {fp:#x}) is not in JIT code"
    ))
}

#[cold]
fn chain_shrinks(fp: u64, next_fp: u64, function: &str) -> Error {
    Error::Unwind(format!(
        "frame chain does not grow toward the caller: {fp:#x} links to {next_fp:#x} (in {function})"
    ))
}
