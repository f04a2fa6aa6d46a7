//! Per-function metadata of a linked image, searchable by program counter:
//! call sites with their handlers, trap sites, and callee-saved register slots.

use crate::compile::{CallSite, CompiledFunction, Handler, TrapSite};
use crate::isa::SavedRegister;

/// Names starting with this prefix are entry trampolines: the unwinder
/// delivers uncaught exceptions to their (catch-all) handler.
pub const ENTRY_TRAMPOLINE_PREFIX: &str = "%__cranelift_exn_entry_";

/// One linked function's metadata, with absolute addresses.
#[derive(Clone, Debug)]
pub struct FunctionEntry {
    /// Name (`%name` or `u0:1`).
    pub name: String,
    /// Absolute address of the first byte.
    pub start: u64,
    /// Absolute address one past the last byte.
    pub end: u64,
    /// Call sites sorted by return offset (function-relative).
    pub call_sites: Vec<CallSite>,
    /// Trap sites sorted by offset (function-relative).
    pub traps: Vec<TrapSite>,
    /// Callee-saved register slots, relative to the frame-pointer value.
    pub saved_registers: Vec<SavedRegister>,
    /// Whether this is an entry trampoline (see [`ENTRY_TRAMPOLINE_PREFIX`]).
    pub is_entry_trampoline: bool,
}

impl FunctionEntry {
    /// Metadata of `f` placed at `start`.
    pub fn new(f: &CompiledFunction, start: u64) -> FunctionEntry {
        let mut call_sites = f.call_sites.clone();
        call_sites.sort_by_key(|c| c.return_offset);
        let mut traps = f.traps.clone();
        traps.sort_by_key(|t| t.offset);
        FunctionEntry {
            name: f.name.clone(),
            start,
            end: start + f.code.len() as u64,
            call_sites,
            traps,
            saved_registers: f.saved_registers.clone(),
            is_entry_trampoline: f.name.starts_with(ENTRY_TRAMPOLINE_PREFIX),
        }
    }

    /// The call site whose return address is `pc`.
    pub fn call_site(&self, pc: u64) -> Option<&CallSite> {
        let offset = u32::try_from(pc.checked_sub(self.start)?).ok()?;
        self.call_sites
            .binary_search_by_key(&offset, |c| c.return_offset)
            .ok()
            .map(|i| &self.call_sites[i])
    }

    /// The trap site at `pc`.
    pub fn trap(&self, pc: u64) -> Option<&TrapSite> {
        let offset = u32::try_from(pc.checked_sub(self.start)?).ok()?;
        self.traps
            .binary_search_by_key(&offset, |t| t.offset)
            .ok()
            .map(|i| &self.traps[i])
    }
}

/// The handler a call site selects for an exception with `tag`: the first
/// `Tag` entry with that tag or the first `Default`, in list order. Returns
/// the handler's offset in the function.
pub fn select_handler(site: &CallSite, tag: u32) -> Option<u32> {
    site.handlers.iter().find_map(|h| match *h {
        Handler::Tag { tag: t, offset } if t == tag => Some(offset),
        Handler::Default { offset } => Some(offset),
        _ => None,
    })
}

/// All functions of an image, sorted by address.
#[derive(Clone, Debug, Default)]
pub struct ExceptionTable {
    functions: Vec<FunctionEntry>,
}

impl ExceptionTable {
    /// A table over `functions` (any order; they must not overlap).
    pub fn new(mut functions: Vec<FunctionEntry>) -> ExceptionTable {
        functions.sort_by_key(|f| f.start);
        ExceptionTable { functions }
    }

    /// The function containing `pc`.
    pub fn function(&self, pc: u64) -> Option<&FunctionEntry> {
        let i = self.functions.partition_point(|f| f.start <= pc);
        let f = self.functions.get(i.checked_sub(1)?)?;
        (pc < f.end).then_some(f)
    }

    /// Every function, by address.
    pub fn functions(&self) -> &[FunctionEntry] {
        &self.functions
    }
}
