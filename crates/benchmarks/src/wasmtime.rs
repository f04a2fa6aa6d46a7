//! wasmtime-internal-unwinder 48 driven over our compiled code.
//!
//! What it provides and how it is used here, piece by piece:
//!
//! * `ExceptionTableBuilder::add_func(offset, call_sites)` builds its
//!   serialized table from Cranelift's `FinalizedMachCallSite`s; we give it
//!   the call sites our compiler recorded, converted back to Cranelift's
//!   types, with each function's offset in our linked image (which is what
//!   Wasmtime does with `MachBufferFinalized::call_sites()` per function of
//!   its text section). `ExceptionTable::parse` then reads the bytes in
//!   place and `lookup_pc` finds a return address's handlers.
//! * `Handler::find` walks frames with `UnwindHost` (the host's frame-pointer
//!   layout) from an exit frame up to an entry frame pointer, asking a
//!   closure per frame for a handler; we answer from the parsed table.
//! * `Handler::resume_tailcc` sets sp, fp and the two payload registers and
//!   jumps to the handler. It restores no other register, which is right
//!   for a `try_call` whose callee uses the `tail` convention (our `%rec`).
//!
//! What it does not provide: a throw stub to capture the JIT caller's
//! state, an entry trampoline, trap delivery. The throw function below is
//! an ordinary `extern "C"` Rust function that JIT code calls with
//! upstream's `__cranelift_throw` arguments, which carry everything
//! `Handler::find` needs (entry fp, exit fp, a pc in the exit frame).
//! Call-site contexts kept in a register (`ExceptionContextLoc::GPR`) have
//! no representation in its format (its builder panics on them), so
//! [`build_table`] reports them as an error instead.

use std::cell::Cell;

use cranelift_codegen::ir::ExceptionTag;
use cranelift_codegen::{
    ExceptionContextLoc, FinalizedMachCallSite, FinalizedMachExceptionHandler,
};
use cranelift_exn::compile::{CallSite, ContextLocation, Handler};
use cranelift_exn::exception_table::FunctionEntry;
use cranelift_exn::link::Image;
use wasmtime_internal_unwinder::{ExceptionTable, ExceptionTableBuilder, UnwindHost};

/// Cranelift's form of one of our call sites' handler lists; `None` when a
/// context lives in a register, which wasmtime's format cannot hold.
fn cranelift_handlers(site: &CallSite) -> Option<Vec<FinalizedMachExceptionHandler>> {
    site.handlers
        .iter()
        .map(|h| match *h {
            Handler::Tag { tag, offset } => Some(FinalizedMachExceptionHandler::Tag(
                ExceptionTag::from_u32(tag),
                offset,
            )),
            Handler::Default { offset } => Some(FinalizedMachExceptionHandler::Default(offset)),
            Handler::Context(ContextLocation::Stack { sp_offset }) => Some(
                FinalizedMachExceptionHandler::Context(ExceptionContextLoc::SPOffset(sp_offset)),
            ),
            Handler::Context(ContextLocation::Register(_)) => None,
        })
        .collect()
}

/// Add functions to a wasmtime table builder, each at `offset(function)`
/// (functions in ascending offset order).
pub fn add_functions<'a>(
    builder: &mut ExceptionTableBuilder,
    functions: impl IntoIterator<Item = (u32, &'a str, &'a [CallSite])>,
) -> Result<(), String> {
    for (offset, name, sites) in functions {
        let handlers = sites
            .iter()
            .map(|site| {
                cranelift_handlers(site).ok_or_else(|| {
                    format!(
                        "{name}+{:#x}: an exception context in a register, which \
                         wasmtime-internal-unwinder's format cannot represent",
                        site.return_offset
                    )
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let sites = sites
            .iter()
            .zip(&handlers)
            .map(|(site, handlers)| FinalizedMachCallSite {
                ret_addr: site.return_offset,
                frame_offset: site.frame_offset,
                exception_handlers: handlers,
            });
        builder
            .add_func(offset, sites)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// wasmtime-internal-unwinder's serialized exception table for a linked
/// image (offsets relative to the image's base).
pub fn build_table(image: &Image) -> Result<Vec<u8>, String> {
    let mut builder = ExceptionTableBuilder::default();
    let offset = |f: &FunctionEntry| {
        u32::try_from(f.start - image.base).map_err(|_| format!("{} is too far", f.name))
    };
    // Our table keeps the call sites with handlers, as wasmtime's format.
    let sites: Vec<Vec<CallSite>> = (0..image.table.functions().len())
        .map(|i| {
            image
                .table
                .call_sites(i)
                .map(|s| s.to_call_site())
                .collect()
        })
        .collect();
    let functions = image
        .table
        .functions()
        .iter()
        .zip(&sites)
        .map(|(f, sites)| Ok((offset(f)?, f.name.as_str(), sites.as_slice())))
        .collect::<Result<Vec<_>, String>>()?;
    add_functions(&mut builder, functions)?;
    Ok(builder.to_vec())
}

/// An image's table, parsed and ready for the throw function.
pub struct WasmtimeUnwinder {
    installed: &'static Installed,
}

struct Installed {
    text_base: usize,
    table: ExceptionTable<'static>,
    bytes: usize,
}

thread_local! {
    /// The table the throw function uses on this thread.
    static ACTIVE: Cell<Option<&'static Installed>> = const { Cell::new(None) };
}

impl WasmtimeUnwinder {
    /// Build and parse the table for `image`. The bytes live as long as
    /// the process (a few hundred bytes per module, and a throw may be in
    /// flight on any thread that activated it).
    pub fn new(image: &Image) -> Result<WasmtimeUnwinder, String> {
        let bytes: &'static [u8] = Box::leak(build_table(image)?.into_boxed_slice());
        let table = ExceptionTable::parse(bytes).map_err(|e| e.to_string())?;
        let installed = Box::leak(Box::new(Installed {
            text_base: usize::try_from(image.base).map_err(|e| e.to_string())?,
            table,
            bytes: bytes.len(),
        }));
        Ok(WasmtimeUnwinder { installed })
    }

    /// Make this table the one [`throw_function`] searches on this thread.
    pub fn activate(&self) {
        ACTIVE.with(|a| a.set(Some(self.installed)));
    }

    /// Size of the serialized table in bytes.
    pub fn table_bytes(&self) -> usize {
        self.installed.bytes
    }

    /// The handler for `tag` at return address `pc` whose frame pointer is
    /// `fp`, as `(handler pc, sp)`: what `Handler::find` asks per frame.
    pub fn handler_at(&self, pc: usize, fp: usize, tag: u32) -> Option<(usize, usize)> {
        self.installed.handler_at(pc, fp, tag)
    }
}

impl Installed {
    fn handler_at(&self, pc: usize, fp: usize, tag: u32) -> Option<(usize, usize)> {
        let offset = u32::try_from(pc.checked_sub(self.text_base)?).ok()?;
        let (frame_offset, mut handlers) = self.table.lookup_pc(offset);
        let handler = handlers.find(|h| h.tag.is_none_or(|t| t == tag))?;
        let sp = fp.checked_sub(usize::try_from(frame_offset?).ok()?)?;
        Some((self.text_base + handler.handler_offset as usize, sp))
    }
}

/// The throw function JIT code calls (`__cranelift_throw`'s arguments):
/// `Handler::find` walks from the exit frame, stopping below `entry_fp`;
/// `resume_tailcc` jumps to the handler with the payloads. No handler (or
/// no active table) aborts: there is nowhere to return to.
extern "C" fn wasmtime_throw(
    entry_fp: usize,
    exit_fp: usize,
    exit_pc: usize,
    tag: u32,
    payload1: usize,
    payload2: usize,
) {
    let Some(installed) = ACTIVE.with(|a| a.get()) else {
        eprintln!("wasmtime_throw: no table active on this thread");
        std::process::abort();
    };
    // SAFETY: JIT code passed its own frame pointer, a pc of its function
    // and the frame pointer of the frame above the catching one: a chain
    // of Cranelift frames with frame pointers, as `find` requires.
    let handler = unsafe {
        wasmtime_internal_unwinder::Handler::find(
            &UnwindHost,
            |frame| installed.handler_at(frame.pc(), frame.fp(), tag),
            exit_pc,
            exit_fp,
            entry_fp,
        )
    };
    let Some(handler) = handler else {
        eprintln!("wasmtime_throw: no handler for tag {tag}");
        std::process::abort();
    };
    // SAFETY: the handler is a `try_call` handler of a live frame whose
    // callee uses the `tail` convention; the Rust frames skipped (this one)
    // own nothing that needs dropping.
    unsafe { handler.resume_tailcc(payload1, payload2) }
}

/// Address of the throw function, for JIT code to call.
pub fn throw_function() -> u64 {
    wasmtime_throw as *const () as u64
}
