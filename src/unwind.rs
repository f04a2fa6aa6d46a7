//! The frame-pointer unwinder and the throw service.
//!
//! A throw arrives as a register context filled by the ISA's throw stub (see
//! [`crate::isa::IsaSpec`]). [`throw`] walks frames through a [`Memory`] —
//! restoring, frame by frame, the callee-saved registers each skipped
//! function saved — finds the handler, and rewrites the context into the
//! resume state the resume stub installs.

use crate::error::Error;
use crate::exception_table::{ExceptionTable, select_handler};
use crate::isa::{Arch, context};
use crate::memory::Memory;

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

/// A register context in target memory.
pub struct Context {
    words: Vec<u64>,
}

impl Context {
    /// Read the context at `addr` for `arch`.
    pub fn read(memory: &dyn Memory, arch: Arch, addr: u64) -> Result<Context, Error> {
        let n = context::SAVED + arch.spec().callee_saved().len();
        let words = (0..n)
            .map(|i| memory.read_u64(addr + 8 * i as u64))
            .collect::<Result<_, _>>()?;
        Ok(Context { words })
    }

    /// Write the context back to `addr`.
    pub fn write(&self, memory: &mut dyn Memory, addr: u64) -> Result<(), Error> {
        for (i, w) in self.words.iter().enumerate() {
            memory.write_u64(addr + 8 * i as u64, *w)?;
        }
        Ok(())
    }

    /// Word `index` (see [`context`]).
    pub fn get(&self, index: usize) -> u64 {
        self.words[index]
    }

    /// Set word `index`.
    pub fn set(&mut self, index: usize, value: u64) {
        self.words[index] = value;
    }

    /// The throw arguments the stub captured.
    pub fn request(&self) -> ThrowRequest {
        let arg = |i| self.words[context::ARGS + i];
        ThrowRequest {
            entry_fp: arg(0),
            exit_fp: arg(1),
            exit_pc: arg(2),
            tag: arg(3) as u32,
            payloads: [arg(4), arg(5)],
        }
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
pub fn throw(
    arch: Arch,
    table: &ExceptionTable,
    memory: &mut dyn Memory,
    context_addr: u64,
) -> Result<(ThrowRequest, Delivery), Error> {
    let spec = arch.spec();
    let links = spec.frame_links();
    let saved_order = spec.callee_saved();
    let mut ctx = Context::read(memory, arch, context_addr)?;
    let request = ctx.request();

    let mut pc = ctx.get(context::PC);
    let mut fp = ctx.get(context::FP);
    let mut searching = false;
    let mut past_entry = false;
    for _ in 0..MAX_FRAMES {
        if fp == request.exit_fp {
            searching = true;
        }
        if fp == request.entry_fp {
            past_entry = true;
        }
        // A return address may equal its function's end (a call as the last
        // instruction), so look the function up by the byte before it.
        let function = table.function(pc.wrapping_sub(1)).ok_or_else(|| {
            Error::Unwind(format!(
                "return address {pc:#x} (frame {fp:#x}) is not in JIT code"
            ))
        })?;
        if let Some(site) = function.call_site(pc) {
            let catch = if function.is_entry_trampoline {
                select_handler(site, request.tag).map(|h| (h, false))
            } else if searching && !past_entry {
                select_handler(site, request.tag).map(|h| (h, true))
            } else {
                None
            };
            if let Some((handler, caught)) = catch {
                let frame_offset = site.frame_offset.ok_or_else(|| {
                    Error::Unwind(format!(
                        "call site {}+{:#x} has handlers but no frame offset",
                        function.name, site.return_offset
                    ))
                })?;
                let target = function.start + u64::from(handler);
                let sp = fp - u64::from(frame_offset);
                ctx.set(context::PC, target);
                ctx.set(context::SP, sp);
                ctx.set(context::FP, fp);
                ctx.set(context::PAYLOAD0, request.payloads[0]);
                ctx.set(context::PAYLOAD1, request.payloads[1]);
                ctx.write(memory, context_addr)?;
                let delivery = if caught {
                    Delivery::Caught { pc: target, sp, fp }
                } else {
                    Delivery::Uncaught { pc: target, sp, fp }
                };
                return Ok((request, delivery));
            }
        }
        // Leave this frame: the registers it saved get their caller's values.
        for saved in &function.saved_registers {
            if let Some(i) = saved_order.iter().position(|r| *r == saved.reg) {
                let value = memory.read_u64(fp.wrapping_add_signed(saved.fp_offset))?;
                ctx.set(context::SAVED + i, value);
            }
        }
        let next_pc = memory.read_u64(fp.wrapping_add_signed(links.return_address_offset))?;
        let next_fp = memory.read_u64(fp.wrapping_add_signed(links.caller_fp_offset))?;
        if next_fp <= fp {
            return Err(Error::Unwind(format!(
                "frame chain does not grow toward the caller: {fp:#x} links to {next_fp:#x} \
                 (in {})",
                function.name
            )));
        }
        pc = next_pc;
        fp = next_fp;
    }
    Err(Error::Unwind(format!("more than {MAX_FRAMES} frames")))
}
