//! The frame cursor: where a walk is, what the exception table knows of that
//! frame, and the step to its caller (restoring the callee-saved registers
//! the frame saved, then following the frame-pointer chain).

use super::ContextWords;
use crate::error::Error;
use crate::exception_table::{ExceptionTable, FunctionEntry, ReturnSite};
use crate::isa::{Arch, FrameLinks};
use crate::memory::Memory;

/// What a walk knows of a frame from its return address.
#[derive(Clone, Copy)]
pub(super) enum Frame<'t> {
    /// The return address of a call site.
    CallSite(ReturnSite),
    /// Some other address of this function (no handlers here, but the
    /// function's saves are restored all the same).
    Other(&'t FunctionEntry),
}

/// A walk's position: the return address `pc` into the frame whose
/// frame-pointer value is `fp`.
pub(super) struct FrameCursor<'a, M: ?Sized> {
    table: &'a ExceptionTable,
    memory: &'a M,
    links: FrameLinks,
    /// The return address into the current frame.
    pub pc: u64,
    /// The current frame's frame-pointer value.
    pub fp: u64,
}

impl<'a, M: Memory + ?Sized> FrameCursor<'a, M> {
    /// A cursor at the frame `fp` that `pc` returns into.
    #[inline]
    pub fn new(arch: Arch, table: &'a ExceptionTable, memory: &'a M, pc: u64, fp: u64) -> Self {
        FrameCursor {
            table,
            memory,
            links: arch.spec().frame_links(),
            pc,
            fp,
        }
    }

    /// What the exception table knows of the current frame.
    #[inline]
    pub fn frame(&self) -> Result<Frame<'a>, Error> {
        match self.table.return_site(self.pc) {
            Some(hit) => Ok(Frame::CallSite(hit)),
            None => not_a_call_site(self.table, self.pc, self.fp).map(Frame::Other),
        }
    }

    /// Leave `frame`, the current one, for its caller: the registers it
    /// saved get their caller's values in `ctx` (when `restore`), then the
    /// cursor moves to the caller's return address and frame.
    #[inline]
    pub fn step<C: ContextWords>(
        &mut self,
        frame: Frame<'a>,
        ctx: &mut C,
        restore: bool,
    ) -> Result<(), Error> {
        let (fp, memory) = (self.fp, self.memory);
        let saves = match frame {
            Frame::CallSite(hit) if hit.restores() => Some(self.table.resolve(hit).0),
            Frame::Other(function) if !function.restore.is_empty() => Some(function),
            _ => None,
        };
        if restore && let Some(function) = saves {
            for &(word, fp_offset) in &function.restore {
                ctx.set(word, memory.read_u64(fp.wrapping_add_signed(fp_offset))?);
            }
        }
        let links = self.links;
        let next_pc = memory.read_u64(fp.wrapping_add_signed(links.return_address_offset))?
            & links.return_address_mask;
        let next_fp = memory.read_u64(fp.wrapping_add_signed(links.caller_fp_offset))?;
        if next_fp <= fp {
            let function = match frame {
                Frame::CallSite(hit) => self.table.resolve(hit).0,
                Frame::Other(function) => function,
            };
            return Err(chain_shrinks(fp, next_fp, &function.name));
        }
        self.pc = next_pc;
        self.fp = next_fp;
        Ok(())
    }
}

/// The function of a frame whose return address `pc` is no call site.
#[cold]
fn not_a_call_site(table: &ExceptionTable, pc: u64, fp: u64) -> Result<&FunctionEntry, Error> {
    table.function(pc.wrapping_sub(1)).ok_or_else(|| {
        Error::Unwind(format!(
            "return address {pc:#x} (frame {fp:#x}) is not in JIT code"
        ))
    })
}

#[cold]
fn chain_shrinks(fp: u64, next_fp: u64, function: &str) -> Error {
    Error::Unwind(format!(
        "frame chain does not grow toward the caller: {fp:#x} links to {next_fp:#x} (in {function})"
    ))
}
