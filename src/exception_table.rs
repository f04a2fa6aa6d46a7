//! Per-function metadata of a linked image, searchable by program counter,
//! and the compact exception table the unwinder reads in place.
//!
//! Two tables live side by side in an [`ExceptionTable`]:
//!
//! * the *function table*: one [`FunctionEntry`] per function (bounds,
//!   name, trap sites, callee-saved register slots), sorted by address, with
//!   a column of start addresses for the lookup by pc;
//! * the *call-site table*: only call sites with a handler list (plain
//!   calls need nothing beyond their function's restore slots), as flat
//!   `u32` columns sorted by (function, return offset) — function index,
//!   return offset, frame offset, end of the handler rows — and two `u32`
//!   columns of handler rows, plus an open-addressing index from return
//!   address to site sized to those sites alone.
//!
//! A handler row is a (tag, word) pair:
//!
//! | entry | tag column | word column |
//! |---|---|---|
//! | `Tag { tag, offset }` | `tag` | `offset` |
//! | `Default { offset }` | `u32::MAX` | `offset` |
//! | `Context(Stack { sp_offset })` | `sp_offset` | `u32::MAX` |
//! | `Context(Register(reg))` | class << 8 \| hw | `u32::MAX - 1` |
//!
//! so handler offsets must stay below `u32::MAX - 1` and tags below
//! `u32::MAX` (Cranelift's tags are entity numbers, which never reach
//! it); a table that would break either is an `Err`.

use crate::compile::{
    CallSite, CompiledFunction, ContextLocation, FunctionKind, Handler, TrapSite,
};
use crate::error::Error;
use crate::isa::{Arch, Reg, RegClass, SavedRegister, context};
use crate::memory::Memory;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Entry trampolines' names start with this prefix (the unwinder knows them
/// by [`FunctionEntry::kind`], not by name).
pub const ENTRY_TRAMPOLINE_PREFIX: &str = "%__cranelift_exn_entry_";

/// The tag-column value of a `Default` handler row.
const DEFAULT_TAG: u32 = u32::MAX;
/// The word-column value of a stack-context row.
const CONTEXT_STACK: u32 = u32::MAX;
/// The word-column value of a register-context row; handler offsets are
/// below it.
const CONTEXT_REGISTER: u32 = u32::MAX - 1;
/// The frame-offset column value of a site without a frame offset.
const NO_FRAME_OFFSET: u32 = u32::MAX;

/// One linked function's metadata, with absolute addresses (its call sites
/// with handlers are in the [`ExceptionTable`]'s columns:
/// [`ExceptionTable::call_sites`]).
#[derive(Clone, Debug)]
pub struct FunctionEntry {
    /// Name (`%name` or `u0:1`).
    pub name: String,
    /// Absolute address of the first byte.
    pub start: u64,
    /// Absolute address one past the last byte.
    pub end: u64,
    /// Trap sites sorted by offset (function-relative).
    pub traps: Vec<TrapSite>,
    /// Callee-saved register slots, relative to the frame-pointer value.
    pub saved_registers: Vec<SavedRegister>,
    /// Whether this is an entry trampoline or other code.
    pub kind: FunctionKind,
    /// How the unwinder leaves a frame of this function.
    pub(crate) restore: FrameRestore,
    /// Whether the table holds call sites with handlers of this function
    /// (set by [`ExceptionTable::new`]): a frame of a function without
    /// any needs no probe of the index.
    pub(crate) has_handler_sites: bool,
}

impl FunctionEntry {
    /// Whether this is an entry trampoline.
    #[inline]
    pub fn is_entry_trampoline(&self) -> bool {
        self.kind == FunctionKind::EntryTrampoline
    }

    /// Metadata of `f` placed at `start` (its call sites go to
    /// [`ExceptionTable::new`] beside it).
    pub fn new(f: &CompiledFunction, start: u64) -> FunctionEntry {
        let mut traps = f.traps.clone();
        traps.sort_by_key(|t| t.offset);
        FunctionEntry {
            name: f.name.clone(),
            start,
            end: start + f.code.len() as u64,
            traps,
            saved_registers: f.saved_registers.clone(),
            kind: f.kind,
            restore: restore_slots(f.arch, &f.saved_registers),
            has_handler_sites: false,
        }
    }

    /// The trap site of the instruction at `pc`, recorded at most `skew`
    /// bytes past it (see [`crate::isa::IsaSpec::trap_record_skew`]).
    pub fn trap_at_instruction(&self, pc: u64, skew: u32) -> Option<&TrapSite> {
        let offset = u32::try_from(pc.checked_sub(self.start)?).ok()?;
        let i = self.traps.partition_point(|t| t.offset < offset);
        self.traps
            .get(i)
            .filter(|t| t.offset <= offset.saturating_add(skew))
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

/// What the unwinder reads to leave a frame of one function (see
/// [`FunctionEntry::restore`]).
#[derive(Clone, Debug)]
pub(crate) struct FrameRestore {
    /// `saved_registers` as the unwinder restores them: (context word,
    /// offset from the frame-pointer value), for the registers the ISA's
    /// throw context holds (see [`crate::isa::context::SAVED`]).
    pub slots: Vec<(usize, i64)>,
    /// Every byte a step out of the frame reads — the slots and the ISA's
    /// frame links — as (offset from the frame-pointer value, length): on
    /// host memory the step checks this span once instead of each word.
    pub window: (i64, u64),
    /// The architecture whose frame links `window` covers: a walk on any
    /// other checks each word.
    pub arch: Arch,
}

impl FrameRestore {
    /// The restore of `slots` on `arch`: `window` covers them and the
    /// frame links.
    pub(crate) fn new(arch: Arch, slots: Vec<(usize, i64)>) -> FrameRestore {
        let links = arch.spec().frame_links();
        let offsets = slots
            .iter()
            .map(|&(_, offset)| offset)
            .chain([links.caller_fp_offset, links.return_address_offset]);
        let (low, high) = offsets.fold((i64::MAX, i128::MIN), |(low, high), offset| {
            (low.min(offset), high.max(i128::from(offset) + 8))
        });
        // Exact: a span too long for a u64 (absurd offsets) becomes one no
        // memory contains, so the check refuses it.
        let len = u64::try_from(high - i128::from(low)).unwrap_or(u64::MAX);
        FrameRestore {
            slots,
            window: (low, len),
            arch,
        }
    }
}

/// The context words and frame slots of `saved` on `arch` (see
/// [`FunctionEntry::restore`]); registers the context does not hold are
/// left out.
pub(crate) fn restore_slots(arch: Arch, saved: &[SavedRegister]) -> FrameRestore {
    let order = arch.spec().callee_saved();
    let slots = saved
        .iter()
        .filter_map(|s| {
            let i = order.iter().position(|r| *r == s.reg)?;
            Some((context::SAVED + i, s.fp_offset))
        })
        .collect();
    FrameRestore::new(arch, slots)
}

/// A call site with handlers as the [`ExceptionTable`] stores it: a view
/// of one row of its columns.
#[derive(Clone, Copy)]
pub struct SiteRef<'t> {
    table: &'t ExceptionTable,
    index: usize,
}

impl<'t> SiteRef<'t> {
    /// The site's function.
    #[inline]
    pub fn function(self) -> &'t FunctionEntry {
        &self.table.functions[self.table.site_function[self.index] as usize]
    }

    /// The index of the site's function in [`ExceptionTable::functions`].
    #[inline]
    pub fn function_index(self) -> usize {
        self.table.site_function[self.index] as usize
    }

    /// Offset of the return address in the function's code.
    #[inline]
    pub fn return_offset(self) -> u32 {
        self.table.site_return[self.index]
    }

    /// Distance from the frame-pointer value down to the stack pointer at
    /// the call.
    #[inline]
    pub fn frame_offset(self) -> Option<u32> {
        let offset = self.table.site_frame[self.index];
        (offset != NO_FRAME_OFFSET).then_some(offset)
    }

    /// The site's rows in the handler columns.
    #[inline]
    fn rows(self) -> std::ops::Range<usize> {
        let start = match self.index {
            0 => 0,
            i => self.table.site_end[i - 1] as usize,
        };
        start..self.table.site_end[self.index] as usize
    }

    /// The handler list, in order.
    pub fn handlers(self) -> impl DoubleEndedIterator<Item = Handler> + ExactSizeIterator + 't {
        let table = self.table;
        self.rows()
            .map(move |i| decode(table.row_tag[i], table.row_word[i]))
    }

    /// The site as a [`CallSite`] (a copy of what it was built from).
    pub fn to_call_site(self) -> CallSite {
        CallSite {
            return_offset: self.return_offset(),
            frame_offset: self.frame_offset(),
            handlers: self.handlers().collect(),
        }
    }

    /// The handler the site selects for an exception with `tag`: the first
    /// `Tag` entry with that tag or the first `Default`, in list order.
    /// Returns the handler's offset in the function.
    #[inline]
    pub fn select_handler(self, tag: u32) -> Option<u32> {
        let (tags, words) = (&self.table.row_tag, &self.table.row_word);
        self.rows().find_map(|i| {
            let word = words[i];
            // Context rows have no handler; tag and default rows match.
            (word < CONTEXT_REGISTER && (tags[i] == tag || tags[i] == DEFAULT_TAG)).then_some(word)
        })
    }

    /// The value of an exception context of this site (one of its
    /// [`Handler::Context`] locations) in a frame being unwound.
    ///
    /// `fp` is the frame's frame-pointer value; `saved` gives the value
    /// each callee-saved register had in this frame, as an unwinder knows
    /// it after restoring the save areas of every frame below (for the
    /// innermost frame: the registers the throw stub captured).
    pub fn context_value(
        self,
        location: ContextLocation,
        fp: u64,
        saved: &dyn Fn(Reg) -> Option<u64>,
        memory: &dyn Memory,
    ) -> Result<u64, Error> {
        let at = || {
            format!(
                "exception context of call site {}+{:#x}",
                self.function().name,
                self.return_offset()
            )
        };
        match location {
            ContextLocation::Stack { sp_offset } => {
                let frame_offset = self
                    .frame_offset()
                    .ok_or_else(|| Error::Unwind(format!("{}: no frame offset", at())))?;
                let sp = fp.checked_sub(u64::from(frame_offset)).ok_or_else(|| {
                    Error::Unwind(format!(
                        "{}: frame pointer {fp:#x} below the frame offset {frame_offset:#x}",
                        at()
                    ))
                })?;
                memory.read_u64(sp.wrapping_add(u64::from(sp_offset)))
            }
            ContextLocation::Register(reg) => saved(reg)
                .ok_or_else(|| Error::Unwind(format!("{}: no value for register {reg:?}", at()))),
        }
    }
}

impl std::fmt::Debug for SiteRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?}", self.function().name, self.to_call_site())
    }
}

/// The (tag, word) row of a handler-list entry (see the module
/// documentation), or what makes it unrepresentable.
fn encode(handler: &Handler) -> Result<(u32, u32), String> {
    let offset = |offset: u32| {
        if offset < CONTEXT_REGISTER {
            Ok(offset)
        } else {
            Err(format!("handler offset {offset:#x} out of range"))
        }
    };
    Ok(match *handler {
        Handler::Tag { tag, offset: o } => {
            if tag == DEFAULT_TAG {
                return Err(format!("tag {tag:#x} out of range"));
            }
            (tag, offset(o)?)
        }
        Handler::Default { offset: o } => (DEFAULT_TAG, offset(o)?),
        Handler::Context(ContextLocation::Stack { sp_offset }) => (sp_offset, CONTEXT_STACK),
        Handler::Context(ContextLocation::Register(reg)) => {
            let class = match reg.class {
                RegClass::Int => 0,
                RegClass::Float => 1,
            };
            ((class << 8) | u32::from(reg.hw), CONTEXT_REGISTER)
        }
    })
}

/// The handler-list entry of a row [`encode`] made.
#[inline]
fn decode(tag: u32, word: u32) -> Handler {
    match word {
        CONTEXT_STACK => Handler::Context(ContextLocation::Stack { sp_offset: tag }),
        CONTEXT_REGISTER => {
            let hw = tag as u8;
            Handler::Context(ContextLocation::Register(if tag >> 8 == 0 {
                Reg::int(hw)
            } else {
                Reg::float(hw)
            }))
        }
        offset if tag == DEFAULT_TAG => Handler::Default { offset },
        offset => Handler::Tag { tag, offset },
    }
}

/// Bytes an [`ExceptionTable`]'s call-site table allocates, by part (the
/// `Vec` headers of its columns aside); the function table beside it is
/// not counted. A table built at once ([`ExceptionTable::new`]) allocates
/// what it holds; one grown by [`ExceptionTable::merge`] may hold spare
/// capacity, counted here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableBytes {
    /// Call sites with handlers stored.
    pub sites: usize,
    /// Handler rows stored (tags, defaults and contexts).
    pub rows: usize,
    /// The per-site columns: function index, return offset, frame offset,
    /// end of the handler rows (4 × `u32` per site).
    pub site_columns: usize,
    /// The handler columns: tag and word (2 × `u32` per row).
    pub handler_columns: usize,
    /// The return-address index: two `u32` slots per site (up to three
    /// after merges).
    pub index: usize,
}

impl TableBytes {
    /// Everything counted.
    pub fn total(&self) -> usize {
        self.site_columns + self.handler_columns + self.index
    }
}

/// All functions of an image, sorted by address, and the compact table of
/// their call sites with handlers (see the module documentation).
#[derive(Debug, Default)]
pub struct ExceptionTable {
    functions: Vec<FunctionEntry>,
    /// `functions[i].start`: the column the lookup by pc searches.
    starts: Vec<u64>,
    /// Per call site with handlers, sorted by (function, return offset):
    /// the function's index,
    site_function: Vec<u32>,
    /// the return offset in the function,
    site_return: Vec<u32>,
    /// the frame offset (`NO_FRAME_OFFSET` for none),
    site_frame: Vec<u32>,
    /// and the end (exclusive) of its handler rows, which start where the
    /// previous site's end.
    site_end: Vec<u32>,
    /// Handler rows: tag column,
    row_tag: Vec<u32>,
    /// and word column (handler offset or context marker).
    row_word: Vec<u32>,
    /// Return address → site: site index + 1 (0: an empty slot); twice as
    /// many slots as sites, linear probing.
    index: Vec<u32>,
    /// For each of a walk's first [`WALK_HINTS`] frames, the function the
    /// last walk had to search for there: where the next walk looks first
    /// (hints, always checked against the pc: throws from one place walk
    /// the same functions, and skip the searches).
    walk_hints: [AtomicUsize; WALK_HINTS],
}

/// How many of a walk's first frames [`ExceptionTable`] keeps a hint for.
const WALK_HINTS: usize = 4;

impl Clone for ExceptionTable {
    fn clone(&self) -> Self {
        ExceptionTable {
            functions: self.functions.clone(),
            starts: self.starts.clone(),
            site_function: self.site_function.clone(),
            site_return: self.site_return.clone(),
            site_frame: self.site_frame.clone(),
            site_end: self.site_end.clone(),
            row_tag: self.row_tag.clone(),
            row_word: self.row_word.clone(),
            index: self.index.clone(),
            walk_hints: std::array::from_fn(|depth| AtomicUsize::new(self.walk_hint(depth))),
        }
    }
}

/// An error about the call site returning to `function`+`offset`.
/// A table too large for its 32-bit columns.
fn too_many(what: &str) -> Error {
    Error::Link {
        function: "<image>".into(),
        offset: 0,
        kind: "exception table".into(),
        message: format!("more than 2^32 - 2 {what}"),
    }
}

fn site_error(function: &FunctionEntry, offset: u32, message: String) -> Error {
    Error::Link {
        function: function.name.clone(),
        offset,
        kind: "exception table".into(),
        message,
    }
}

impl ExceptionTable {
    /// A table over `functions` with their call sites (any order; the
    /// functions must not overlap). Call sites without handlers are not
    /// stored. An `Err` names a site the compact form cannot hold (a tag
    /// or handler offset at the top of the `u32` range, a frame offset of
    /// `u32::MAX`, two sites returning to one address) or overlapping
    /// functions.
    pub fn new<S: AsRef<[CallSite]>>(
        mut functions: Vec<(FunctionEntry, S)>,
    ) -> Result<ExceptionTable, Error> {
        functions.sort_by_key(|(f, _)| f.start);
        for pair in functions.windows(2) {
            let (a, b) = (&pair[0].0, &pair[1].0);
            if b.start < a.end {
                return Err(site_error(
                    b,
                    0,
                    format!(
                        "overlaps {} ({:#x}..{:#x}) at {:#x}",
                        a.name, a.start, a.end, b.start
                    ),
                ));
            }
        }
        let mut site_function = Vec::new();
        let mut site_return = Vec::new();
        let mut site_frame = Vec::new();
        let mut site_end = Vec::new();
        let mut row_tag = Vec::new();
        let mut row_word = Vec::new();
        for (fi, (f, sites)) in functions.iter().enumerate() {
            let fi = u32::try_from(fi).map_err(|_| too_many("functions"))?;
            let mut sites: Vec<&CallSite> = sites
                .as_ref()
                .iter()
                .filter(|s| !s.handlers.is_empty())
                .collect();
            sites.sort_by_key(|s| s.return_offset);
            for site in sites {
                let at = |message| site_error(f, site.return_offset, message);
                site_function.push(fi);
                site_return.push(site.return_offset);
                site_frame.push(match site.frame_offset {
                    None => NO_FRAME_OFFSET,
                    Some(NO_FRAME_OFFSET) => {
                        return Err(at(format!(
                            "frame offset {NO_FRAME_OFFSET:#x} out of range"
                        )));
                    }
                    Some(offset) => offset,
                });
                for handler in &site.handlers {
                    let (tag, word) = encode(handler).map_err(at)?;
                    row_tag.push(tag);
                    row_word.push(word);
                }
                site_end.push(u32::try_from(row_tag.len()).map_err(|_| too_many("handler rows"))?);
            }
        }
        if site_function.len() >= u32::MAX as usize {
            return Err(too_many("call sites"));
        }
        let (mut functions, _): (Vec<FunctionEntry>, Vec<S>) = functions.into_iter().unzip();
        for f in &mut functions {
            f.has_handler_sites = false;
        }
        for &fi in &site_function {
            functions[fi as usize].has_handler_sites = true;
        }
        let exact = |mut column: Vec<u32>| {
            column.shrink_to_fit();
            column
        };
        let mut table = ExceptionTable {
            starts: functions.iter().map(|f| f.start).collect(),
            functions,
            site_function: exact(site_function),
            site_return: exact(site_return),
            site_frame: exact(site_frame),
            site_end: exact(site_end),
            row_tag: exact(row_tag),
            row_word: exact(row_word),
            index: Vec::new(),
            walk_hints: Default::default(),
        };
        table.index = table.build_index(2 * table.site_function.len())?;
        Ok(table)
    }

    /// The return-address index over the sites.
    /// The return-address index over the sites, `slots` long (at least
    /// twice the sites: probes stay short).
    fn build_index(&self, slots: usize) -> Result<Vec<u32>, Error> {
        let mut index = vec![0u32; slots];
        self.index_sites(&mut index, 0..self.site_function.len())?;
        Ok(index)
    }

    /// Enter `sites` into `index` (which holds none of them and has room:
    /// at most half its slots full afterwards).
    fn index_sites(&self, index: &mut [u32], sites: std::ops::Range<usize>) -> Result<(), Error> {
        for site in sites {
            let pc = self.site_pc(site);
            let mut i = slot(pc, index.len());
            while index[i] != 0 {
                let other = index[i] as usize - 1;
                if self.site_pc(other) == pc {
                    let f = &self.functions[self.site_function[site] as usize];
                    return Err(site_error(
                        f,
                        self.site_return[site],
                        "two call sites return to this address".into(),
                    ));
                }
                i = if i + 1 == index.len() { 0 } else { i + 1 };
            }
            index[i] = site as u32 + 1;
        }
        Ok(())
    }

    /// The absolute return address of site `site`.
    #[inline]
    fn site_pc(&self, site: usize) -> u64 {
        self.starts[self.site_function[site] as usize]
            .wrapping_add(u64::from(self.site_return[site]))
    }

    /// The index of the function containing `pc`.
    #[inline]
    pub fn function_index(&self, pc: u64) -> Option<usize> {
        let i = self
            .starts
            .partition_point(|&start| start <= pc)
            .checked_sub(1)?;
        (pc < self.functions[i].end).then_some(i)
    }

    /// The function a walk tries first for its frame `depth` (0: the
    /// first), if the table keeps a hint for that frame (see
    /// `walk_hints`); any index, to be checked against the pc.
    #[inline]
    pub(crate) fn walk_hint(&self, depth: usize) -> usize {
        self.walk_hints
            .get(depth)
            .map_or(usize::MAX, |h| h.load(Ordering::Relaxed))
    }

    /// Remember `function` as where the next walk tries first for its
    /// frame `depth`.
    #[inline]
    pub(crate) fn set_walk_hint(&self, depth: usize, function: usize) {
        if let Some(hint) = self.walk_hints.get(depth)
            && hint.load(Ordering::Relaxed) != function
        {
            hint.store(function, Ordering::Relaxed);
        }
    }

    /// The function containing `pc`.
    pub fn function(&self, pc: u64) -> Option<&FunctionEntry> {
        self.function_index(pc).map(|i| &self.functions[i])
    }

    /// The call site with handlers whose return address is `pc`, with its
    /// function: one probe of the index. Plain calls are not stored: their
    /// return addresses find nothing (their function is
    /// [`ExceptionTable::function`]`(pc - 1)`).
    pub fn call_site_returning_to(&self, pc: u64) -> Option<(&FunctionEntry, SiteRef<'_>)> {
        self.site_at(pc).map(|site| (site.function(), site))
    }

    /// The call site with handlers whose return address is `pc`.
    #[inline]
    pub(crate) fn site_at(&self, pc: u64) -> Option<SiteRef<'_>> {
        let len = self.index.len();
        if len == 0 {
            return None;
        }
        let mut i = slot(pc, len);
        loop {
            let entry = self.index[i];
            if entry == 0 {
                return None;
            }
            let site = entry as usize - 1;
            if self.site_pc(site) == pc {
                return Some(SiteRef {
                    table: self,
                    index: site,
                });
            }
            i = if i + 1 == len { 0 } else { i + 1 };
        }
    }

    /// The call sites with handlers of function `function` (an index into
    /// [`ExceptionTable::functions`]), by return offset.
    pub fn call_sites(&self, function: usize) -> impl ExactSizeIterator<Item = SiteRef<'_>> {
        let key = u32::try_from(function).unwrap_or(u32::MAX);
        let start = self.site_function.partition_point(|&f| f < key);
        let end = self.site_function.partition_point(|&f| f <= key);
        (start..end).map(move |index| SiteRef { table: self, index })
    }

    /// Every function, by address.
    pub fn functions(&self) -> &[FunctionEntry] {
        &self.functions
    }

    /// This table with the functions of `other` (and their call sites)
    /// added, skipping those whose start address is already here.
    pub fn merged(&self, other: &ExceptionTable) -> Result<ExceptionTable, Error> {
        let present: std::collections::HashSet<u64> = self.starts.iter().copied().collect();
        let parts = |table: &ExceptionTable, skip: &dyn Fn(u64) -> bool| {
            table
                .functions
                .iter()
                .enumerate()
                .filter(|(_, f)| !skip(f.start))
                .map(|(i, f)| {
                    let sites: Vec<CallSite> =
                        table.call_sites(i).map(SiteRef::to_call_site).collect();
                    (f.clone(), sites)
                })
                .collect::<Vec<_>>()
        };
        let mut all = parts(self, &|_| false);
        all.extend(parts(other, &|start| present.contains(&start)));
        ExceptionTable::new(all)
    }

    /// Add the functions of `other` (and their call sites) to this table,
    /// as [`ExceptionTable::merged`] does, in place. When `other`'s
    /// functions are new and fit between two of this table's (or before
    /// or after all of them), as a new code region's do, its columns are
    /// spliced in, costing copies of the columns and a new index but no
    /// per-function work on what was here; otherwise the table is rebuilt.
    /// On `Err` the table is unchanged.
    pub fn merge(&mut self, other: &ExceptionTable) -> Result<(), Error> {
        let Some(at) = self.splice_point(other) else {
            *self = self.merged(other)?;
            return Ok(());
        };
        if at == self.functions.len() {
            return self.append(other);
        }
        let n = u32::try_from(other.functions.len()).map_err(|_| too_many("functions"))?;
        let at_u32 = u32::try_from(at).map_err(|_| too_many("functions"))?;
        // This table's sites before the splice keep their function indices,
        // the ones after move up by `n`; `other`'s move up by `at`.
        let split = self.site_function.partition_point(|&f| f < at_u32);
        let rows_before = match split {
            0 => 0,
            i => self.site_end[i - 1],
        };
        let other_rows =
            u32::try_from(other.row_tag.len()).map_err(|_| too_many("handler rows"))?;
        let splice_u32 = |mine: &[u32], theirs: &[u32], shift_mine: u32, shift_theirs: u32| {
            let mut column = Vec::with_capacity(mine.len() + theirs.len());
            column.extend_from_slice(&mine[..split]);
            column.extend(theirs.iter().map(|&x| x + shift_theirs));
            column.extend(mine[split..].iter().map(|&x| x + shift_mine));
            column
        };
        let rows_split = rows_before as usize;
        let splice_rows = |mine: &[u32], theirs: &[u32]| {
            let mut column = Vec::with_capacity(mine.len() + theirs.len());
            column.extend_from_slice(&mine[..rows_split]);
            column.extend_from_slice(theirs);
            column.extend_from_slice(&mine[rows_split..]);
            column
        };
        let total_rows = self.row_tag.len() + other.row_tag.len();
        let total_sites = self.site_function.len() + other.site_function.len();
        if u32::try_from(total_rows).is_err() {
            return Err(too_many("handler rows"));
        }
        if total_sites >= u32::MAX as usize {
            return Err(too_many("call sites"));
        }
        let mut functions = Vec::with_capacity(self.functions.len() + other.functions.len());
        functions.extend(self.functions.drain(..at));
        functions.extend(other.functions.iter().cloned());
        functions.append(&mut self.functions);
        let mut table = ExceptionTable {
            starts: functions.iter().map(|f| f.start).collect(),
            functions,
            site_function: splice_u32(&self.site_function, &other.site_function, n, at_u32),
            site_return: splice_u32(&self.site_return, &other.site_return, 0, 0),
            site_frame: splice_u32(&self.site_frame, &other.site_frame, 0, 0),
            site_end: splice_u32(&self.site_end, &other.site_end, other_rows, rows_before),
            row_tag: splice_rows(&self.row_tag, &other.row_tag),
            row_word: splice_rows(&self.row_word, &other.row_word),
            index: Vec::new(),
            walk_hints: Default::default(),
        };
        match table.build_index(2 * table.site_function.len()) {
            Ok(index) => {
                table.index = index;
                *self = table;
                Ok(())
            }
            // Not expected (the functions do not overlap, so neither do
            // their return addresses); this table's functions go back.
            Err(e) => {
                let mut functions = table.functions;
                let after = functions.split_off(at + other.functions.len());
                functions.truncate(at);
                functions.extend(after);
                self.functions = functions;
                Err(e)
            }
        }
    }

    /// [`ExceptionTable::merge`] of `other`, whose functions all lie after
    /// this table's (as the code of a new region at a higher address does),
    /// in place: its columns are appended and its sites entered into the
    /// index, which grows by half again when it would be over half full, so
    /// that a module finalized one function at a time pays for each
    /// function once, not for the whole table each time.
    fn append(&mut self, other: &ExceptionTable) -> Result<(), Error> {
        let at = self.functions.len();
        let (sites, rows) = (self.site_function.len(), self.row_tag.len());
        let total_sites = sites + other.site_function.len();
        if u32::try_from(rows + other.row_tag.len()).is_err() {
            return Err(too_many("handler rows"));
        }
        if total_sites >= u32::MAX as usize {
            return Err(too_many("call sites"));
        }
        u32::try_from(at + other.functions.len()).map_err(|_| too_many("functions"))?;
        let at_u32 = at as u32;
        let rows_u32 = rows as u32;
        self.functions.extend(other.functions.iter().cloned());
        self.starts.extend_from_slice(&other.starts);
        self.site_function
            .extend(other.site_function.iter().map(|&f| f + at_u32));
        self.site_return.extend_from_slice(&other.site_return);
        self.site_frame.extend_from_slice(&other.site_frame);
        self.site_end
            .extend(other.site_end.iter().map(|&end| end + rows_u32));
        self.row_tag.extend_from_slice(&other.row_tag);
        self.row_word.extend_from_slice(&other.row_word);
        let indexed = if 2 * total_sites <= self.index.len() {
            let mut index = std::mem::take(&mut self.index);
            let entered = self.index_sites(&mut index, sites..total_sites);
            self.index = index;
            entered
        } else {
            self.build_index(3 * total_sites)
                .map(|index| self.index = index)
        };
        if let Err(e) = indexed {
            // Not expected (the functions do not overlap); put the table
            // back as it was.
            self.functions.truncate(at);
            self.starts.truncate(at);
            for column in [
                &mut self.site_function,
                &mut self.site_return,
                &mut self.site_frame,
                &mut self.site_end,
            ] {
                column.truncate(sites);
            }
            self.row_tag.truncate(rows);
            self.row_word.truncate(rows);
            self.index = self.build_index(2 * sites)?;
            return Err(e);
        }
        Ok(())
    }

    /// Where `other`'s functions go as one block among this table's: the
    /// index of the first of this table's functions after them, when none
    /// of them is here already and no function of this table lies between
    /// or overlaps them.
    fn splice_point(&self, other: &ExceptionTable) -> Option<usize> {
        let (first, last) = (other.functions.first()?, other.functions.last()?);
        let at = self.starts.partition_point(|&start| start < first.start);
        let after_previous = at == 0 || self.functions[at - 1].end <= first.start;
        let before_next = at == self.functions.len()
            || (last.end <= self.functions[at].start && first.start != self.functions[at].start);
        (after_previous && before_next).then_some(at)
    }

    /// What the call-site table allocates (see [`TableBytes`]).
    pub fn bytes(&self) -> TableBytes {
        let bytes = |column: &Vec<u32>| column.capacity() * std::mem::size_of::<u32>();
        TableBytes {
            sites: self.site_function.len(),
            rows: self.row_tag.len(),
            site_columns: bytes(&self.site_function)
                + bytes(&self.site_return)
                + bytes(&self.site_frame)
                + bytes(&self.site_end),
            handler_columns: bytes(&self.row_tag) + bytes(&self.row_word),
            index: bytes(&self.index),
        }
    }
}

/// The first index slot to probe for return address `pc` in `len` slots:
/// Fibonacci hashing (return addresses differ in their low bits), then the
/// hash scaled to `len` (any length, not only powers of two).
#[inline]
fn slot(pc: u64, len: usize) -> usize {
    let hash = pc.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((u128::from(hash) * len as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{compile_function, default_isa};
    use crate::isa::Endianness;

    fn entry(name: &str, start: u64, len: u64, restore: Vec<(usize, i64)>) -> FunctionEntry {
        FunctionEntry {
            name: name.into(),
            start,
            end: start + len,
            traps: vec![],
            saved_registers: vec![],
            kind: FunctionKind::Code,
            restore: FrameRestore::new(Arch::X86_64, restore),
            has_handler_sites: false,
        }
    }

    /// A frame's window spans exactly the slots and frame links a step
    /// reads, on every ISA; absurd offsets give a span no memory holds.
    #[test]
    fn frame_windows_cover_the_slots_and_the_frame_links() {
        for arch in Arch::ALL {
            let links = arch.spec().frame_links();
            for slots in [vec![], vec![(2, -16), (3, -8)], vec![(2, 160), (3, -48)]] {
                let restore = FrameRestore::new(arch, slots.clone());
                let offsets: Vec<i64> = slots
                    .iter()
                    .map(|&(_, o)| o)
                    .chain([links.caller_fp_offset, links.return_address_offset])
                    .collect();
                let low = *offsets.iter().min().unwrap();
                let high = offsets.iter().max().unwrap() + 8;
                assert_eq!(
                    restore.window,
                    (low, (high - low) as u64),
                    "{arch}: {slots:?}"
                );
                assert_eq!(restore.slots, slots);
            }
            let absurd = FrameRestore::new(arch, vec![(2, i64::MAX - 3), (3, i64::MIN)]);
            assert_eq!(absurd.window, (i64::MIN, u64::MAX), "{arch}");
        }
    }

    /// `count` functions of 0x100 bytes from 0x10000, function `i` with
    /// `i % 7` call sites 4 bytes apart (given in descending order), every
    /// third one with a handler.
    fn synthetic(count: usize) -> Vec<(FunctionEntry, Vec<CallSite>)> {
        (0..count)
            .map(|i| {
                let restore = if i % 2 == 0 {
                    vec![(context::SAVED, -8)]
                } else {
                    vec![]
                };
                let f = entry(
                    &format!("%f{i}"),
                    0x10000 + 0x100 * i as u64,
                    0x100,
                    restore,
                );
                let sites = (0..(i % 7) as u32)
                    .rev()
                    .map(|k| CallSite {
                        return_offset: 8 + 4 * k,
                        frame_offset: Some(16 + k),
                        handlers: if k % 3 == 0 {
                            vec![Handler::Default { offset: 0x80 + k }]
                        } else {
                            vec![]
                        },
                    })
                    .collect();
                (f, sites)
            })
            .collect()
    }

    #[test]
    fn every_handler_site_is_found_by_its_return_address_and_nothing_else() {
        for count in [0, 1, 2, 50, 1000] {
            let functions = synthetic(count);
            let table = ExceptionTable::new(functions.clone()).unwrap();
            let mut stored = 0;
            for (fi, (f, sites)) in functions.iter().enumerate() {
                for site in sites {
                    let pc = f.start + u64::from(site.return_offset);
                    // A plain call's frame is known by its function alone.
                    assert_eq!(table.function(pc - 1).unwrap().start, f.start);
                    let found = table.call_site_returning_to(pc);
                    if site.handlers.is_empty() {
                        assert!(found.is_none(), "{} {site:?}", f.name);
                        continue;
                    }
                    stored += 1;
                    let (function, found) = found.expect("stored");
                    assert_eq!(function.start, f.start);
                    assert_eq!(found.function_index(), fi);
                    assert_eq!(found.to_call_site(), *site);
                    // The bytes around a return address are no call site.
                    assert!(table.site_at(pc + 1).is_none());
                    assert!(table.site_at(pc - 1).is_none());
                }
                assert!(table.site_at(f.start).is_none());
                assert_eq!(
                    table.functions()[fi].has_handler_sites,
                    sites.iter().any(|s| !s.handlers.is_empty())
                );
            }
            let expected: usize = (0..count).map(|i| (i % 7).div_ceil(3)).sum();
            assert_eq!(stored, expected);
            let bytes = table.bytes();
            assert_eq!((bytes.sites, bytes.rows), (expected, expected));
            // Exactly the columns: 4 u32 per site, 2 per row, 2 slots per site.
            assert_eq!(bytes.site_columns, 16 * expected);
            assert_eq!(bytes.handler_columns, 8 * expected);
            assert_eq!(bytes.index, 8 * expected);
            assert_eq!(bytes.total(), 32 * expected);
            assert!(table.site_at(0).is_none());
            assert!(table.site_at(u64::MAX).is_none());
        }
    }

    /// Sites whose return addresses all hash to the index's last slot:
    /// the probe wraps around, and a miss stops at the first empty slot.
    #[test]
    fn colliding_return_addresses_wrap_around_the_index() {
        let start = 0x10000u64;
        // Three sites: six slots.
        let offsets: Vec<u32> = (1..0x10000u32)
            .filter(|&o| slot(start + u64::from(o), 6) == 5)
            .take(3)
            .collect();
        assert_eq!(offsets.len(), 3);
        let sites: Vec<CallSite> = offsets
            .iter()
            .map(|&o| CallSite {
                return_offset: o,
                frame_offset: Some(o),
                handlers: vec![Handler::Tag { tag: o, offset: o }],
            })
            .collect();
        let table = ExceptionTable::new(vec![(entry("%f", start, 0x10000, vec![]), sites.clone())])
            .unwrap();
        assert_eq!(table.index.len(), 6);
        for site in &sites {
            let (_, found) = table
                .call_site_returning_to(start + u64::from(site.return_offset))
                .unwrap();
            assert_eq!(found.to_call_site(), *site);
        }
        let other = (1..0x10000u32)
            .find(|&o| slot(start + u64::from(o), 6) == 5 && !offsets.contains(&o))
            .unwrap();
        assert!(table.site_at(start + u64::from(other)).is_none());
    }

    #[test]
    fn call_sites_of_each_function_come_back_sorted_and_whole() {
        let functions = synthetic(60);
        let table = ExceptionTable::new(functions.clone()).unwrap();
        for (fi, (_, sites)) in functions.iter().enumerate() {
            let mut expected: Vec<CallSite> = sites
                .iter()
                .filter(|s| !s.handlers.is_empty())
                .cloned()
                .collect();
            expected.sort_by_key(|s| s.return_offset);
            let got: Vec<CallSite> = table.call_sites(fi).map(SiteRef::to_call_site).collect();
            assert_eq!(got, expected, "function {fi}");
        }
        assert_eq!(table.call_sites(60).len(), 0);
        assert_eq!(table.call_sites(usize::MAX).len(), 0);
    }

    #[test]
    fn an_empty_table_and_functions_without_call_sites() {
        for table in [
            ExceptionTable::default(),
            ExceptionTable::new(Vec::<(FunctionEntry, Vec<CallSite>)>::new()).unwrap(),
        ] {
            assert!(table.function(0x1000).is_none());
            assert!(table.call_site_returning_to(0x1000).is_none());
            assert_eq!(table.bytes().total(), 0);
        }
        let plain = CallSite {
            return_offset: 0x10,
            frame_offset: None,
            handlers: vec![],
        };
        let table = ExceptionTable::new(vec![
            (entry("%a", 0x1000, 0x40, vec![]), vec![]),
            (entry("%b", 0x2000, 0x40, vec![]), vec![plain]),
        ])
        .unwrap();
        assert_eq!(table.bytes().total(), 0);
        assert!(table.call_site_returning_to(0x2010).is_none());
        assert_eq!(table.function(0x200f).unwrap().name, "%b");
        assert!(table.function(0x1040).is_none(), "between the functions");
        assert!(table.function(0xfff).is_none());
        assert_eq!(table.call_sites(1).len(), 0);
    }

    /// Every kind of entry, in any order, comes back as given; selection
    /// takes the first tag match or default, skipping contexts.
    #[test]
    fn handler_lists_round_trip_and_select_the_first_match() {
        let lists: Vec<Vec<Handler>> = vec![
            vec![Handler::Default { offset: 0 }],
            vec![Handler::Context(ContextLocation::Stack { sp_offset: 8 })],
            vec![
                Handler::Context(ContextLocation::Register(Reg::int(3))),
                Handler::Tag {
                    tag: 0,
                    offset: 0x30,
                },
                Handler::Context(ContextLocation::Stack {
                    sp_offset: u32::MAX,
                }),
                Handler::Tag {
                    tag: u32::MAX - 1,
                    offset: 0x40,
                },
                Handler::Default {
                    offset: CONTEXT_REGISTER - 1,
                },
                Handler::Tag {
                    tag: 7,
                    offset: 0x50,
                },
            ],
            vec![
                Handler::Tag {
                    tag: 7,
                    offset: 0x10,
                },
                Handler::Tag {
                    tag: 7,
                    offset: 0x20,
                },
                Handler::Context(ContextLocation::Register(Reg::float(15))),
            ],
        ];
        let sites: Vec<CallSite> = lists
            .iter()
            .enumerate()
            .map(|(k, handlers)| CallSite {
                return_offset: 4 * k as u32 + 4,
                frame_offset: (k != 1).then_some(k as u32 * 0x10),
                handlers: handlers.clone(),
            })
            .collect();
        let table =
            ExceptionTable::new(vec![(entry("%f", 0x4000, 0x100, vec![]), sites.clone())]).unwrap();
        for site in &sites {
            let (_, found) = table
                .call_site_returning_to(0x4000 + u64::from(site.return_offset))
                .unwrap();
            assert_eq!(found.to_call_site(), *site);
            assert_eq!(found.handlers().len(), site.handlers.len());
            for tag in [0, 1, 7, u32::MAX - 1, u32::MAX] {
                // The list's own rule, spelled out.
                let expected = site.handlers.iter().find_map(|h| match *h {
                    Handler::Tag { tag: t, offset } if t == tag => Some(offset),
                    Handler::Default { offset } => Some(offset),
                    _ => None,
                });
                assert_eq!(found.select_handler(tag), expected, "{site:?} tag {tag}");
            }
        }
        let at = |offset: u64| table.call_site_returning_to(0x4000 + offset).unwrap().1;
        assert_eq!(at(4).select_handler(9), Some(0));
        assert_eq!(
            at(8).select_handler(9),
            None,
            "a context alone selects nothing"
        );
        assert_eq!(at(12).select_handler(7), Some(CONTEXT_REGISTER - 1));
        assert_eq!(at(16).select_handler(7), Some(0x10));
    }

    #[test]
    fn what_the_compact_form_cannot_hold_is_an_error_naming_the_site() {
        let one = |site: CallSite| {
            ExceptionTable::new(vec![(entry("%f", 0x4000, 0x100, vec![]), vec![site])])
                .unwrap_err()
                .to_string()
        };
        let site = |frame_offset, handlers| CallSite {
            return_offset: 0x24,
            frame_offset,
            handlers,
        };
        for (err, what) in [
            (
                one(site(
                    Some(0),
                    vec![Handler::Tag {
                        tag: u32::MAX,
                        offset: 0,
                    }],
                )),
                "tag 0xffffffff",
            ),
            (
                one(site(
                    Some(0),
                    vec![Handler::Default {
                        offset: CONTEXT_REGISTER,
                    }],
                )),
                "handler offset 0xfffffffe",
            ),
            (
                one(site(
                    Some(0),
                    vec![Handler::Tag {
                        tag: 1,
                        offset: u32::MAX,
                    }],
                )),
                "handler offset 0xffffffff",
            ),
            (
                one(site(Some(u32::MAX), vec![Handler::Default { offset: 0 }])),
                "frame offset 0xffffffff",
            ),
        ] {
            assert!(err.contains("%f+0x24") && err.contains(what), "{err}");
        }
        let twice = CallSite {
            return_offset: 0x24,
            frame_offset: Some(0),
            handlers: vec![Handler::Default { offset: 0 }],
        };
        let err = ExceptionTable::new(vec![(
            entry("%f", 0x4000, 0x100, vec![]),
            vec![twice.clone(), twice.clone()],
        )])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("%f+0x24") && err.contains("two call sites"),
            "{err}"
        );
        let err = ExceptionTable::new(vec![
            (entry("%a", 0x4000, 0x100, vec![]), vec![]),
            (entry("%b", 0x40f0, 0x100, vec![]), vec![]),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("%b") && err.contains("overlaps %a"), "{err}");
    }

    #[test]
    fn merged_adds_the_other_tables_functions_once() {
        let all = synthetic(20);
        let a = ExceptionTable::new(all[..12].to_vec()).unwrap();
        let b = ExceptionTable::new(all[8..].to_vec()).unwrap();
        let merged = a.merged(&b).unwrap();
        let whole = ExceptionTable::new(all.clone()).unwrap();
        assert_eq!(merged.functions().len(), 20);
        assert_eq!(merged.bytes(), whole.bytes());
        for i in 0..20 {
            let sites = |t: &ExceptionTable| {
                t.call_sites(i)
                    .map(SiteRef::to_call_site)
                    .collect::<Vec<_>>()
            };
            assert_eq!(sites(&merged), sites(&whole), "function {i}");
        }
    }

    #[test]
    fn merging_in_place_equals_building_the_whole_table() {
        let all = synthetic(20);
        let whole = ExceptionTable::new(all.clone()).unwrap();
        let table =
            |range: std::ops::Range<usize>| ExceptionTable::new(all[range].to_vec()).unwrap();
        let same = |merged: &ExceptionTable, label: &str| {
            assert_eq!(merged.functions().len(), 20, "{label}");
            // The same sites and rows (an appended table may hold spare
            // capacity, and its index more slots).
            let (bytes, exact) = (merged.bytes(), whole.bytes());
            assert_eq!(
                (bytes.sites, bytes.rows),
                (exact.sites, exact.rows),
                "{label}"
            );
            assert!(bytes.total() >= exact.total(), "{label}");
            assert!(merged.index.len() >= 2 * bytes.sites, "{label}");
            assert_eq!(merged.starts, whole.starts, "{label}");
            for i in 0..20 {
                let sites = |t: &ExceptionTable| {
                    t.call_sites(i)
                        .map(SiteRef::to_call_site)
                        .collect::<Vec<_>>()
                };
                assert_eq!(sites(merged), sites(&whole), "{label}: function {i}");
                assert_eq!(
                    merged.functions()[i].has_handler_sites,
                    whole.functions()[i].has_handler_sites,
                    "{label}: function {i}"
                );
            }
            // Every site is found by its return address.
            for (f, sites) in &all {
                for site in sites.iter().filter(|s| !s.handlers.is_empty()) {
                    let pc = f.start + u64::from(site.return_offset);
                    let (found, _) = merged.call_site_returning_to(pc).expect("indexed");
                    assert_eq!(found.start, f.start, "{label}");
                }
            }
        };
        // Spliced after, before and between; then an overlapping table
        // (rebuilt, its functions once).
        let merge = |into: &mut ExceptionTable, other: ExceptionTable, spliced: bool| {
            assert_eq!(into.splice_point(&other).is_some(), spliced);
            into.merge(&other).unwrap();
        };
        let mut after = table(0..12);
        merge(&mut after, table(12..20), true);
        same(&after, "after");
        let mut before = table(12..20);
        merge(&mut before, table(0..12), true);
        same(&before, "before");
        let mut between = table(0..5);
        merge(&mut between, table(15..20), true);
        merge(&mut between, table(5..15), true);
        same(&between, "between");
        let mut overlapping = table(0..12);
        merge(&mut overlapping, table(8..20), false);
        same(&overlapping, "overlapping");
        // One function at a time, each after the others: appended in
        // place, the index growing by half again when half full.
        let mut appended = table(0..1);
        let mut growths = 0;
        for i in 1..20 {
            let slots = appended.index.len();
            merge(&mut appended, table(i..i + 1), true);
            growths += usize::from(appended.index.len() != slots);
            let sites = appended.site_function.len();
            assert!(appended.index.len() <= 3 * sites.max(1), "{i}");
        }
        same(&appended, "appended");
        assert!(growths < 10, "{growths} index rebuilds for 20 functions");
    }

    #[test]
    fn a_merge_that_fails_leaves_the_table_unchanged() {
        let all = synthetic(4);
        let mut table = ExceptionTable::new(all[..2].to_vec()).unwrap();
        let before = table.bytes();
        // A function overlapping %f1 at another start: rebuilt, refused.
        let (mut clash, sites) = all[1].clone();
        clash.start += 0x10;
        clash.end += 0x10;
        clash.name = "%clash".into();
        let other = ExceptionTable::new(vec![(clash, sites)]).unwrap();
        assert!(table.merge(&other).is_err());
        assert_eq!(table.functions().len(), 2);
        assert_eq!(table.bytes(), before);
    }

    /// Every call site with handlers of compiled functions, on every ISA,
    /// comes back from the table as Cranelift recorded it.
    #[test]
    fn compiled_call_sites_round_trip_on_every_isa() {
        let clif = "
function %f(i64, i64) -> i64 {
    sig0 = (i64) -> i64 tail
    fn0 = %g sig0
block0(v0: i64, v1: i64):
    v2 = call fn0(v0)
    try_call fn0(v2), sig0, block1(ret0), [ tag1: block2(exn0), tag3: block2(exn0), default: block3(exn0) ]
block1(v3: i64):
    try_call fn0(v3), sig0, block4(ret0), [ context v1, tag2: block2(exn0) ]
block4(v4: i64):
    v5 = call fn0(v4)
    return v5
block2(v6: i64):
    return v6
block3(v7: i64):
    return v7
}
";
        for arch in Arch::ALL {
            let isa = default_isa(arch).unwrap();
            let func = cranelift_reader::parse_functions(clif).unwrap().remove(0);
            let f = compile_function(&*isa, func).unwrap();
            assert_eq!(f.call_sites.len(), 4, "{arch}");
            let start = 0x1_0000_0000;
            let table =
                ExceptionTable::new(vec![(FunctionEntry::new(&f, start), f.call_sites.clone())])
                    .unwrap();
            let mut expected: Vec<CallSite> = f
                .call_sites
                .iter()
                .filter(|s| !s.handlers.is_empty())
                .cloned()
                .collect();
            expected.sort_by_key(|s| s.return_offset);
            assert_eq!(expected.len(), 2, "{arch}");
            let got: Vec<CallSite> = table.call_sites(0).map(SiteRef::to_call_site).collect();
            assert_eq!(got, expected, "{arch}");
            for site in &f.call_sites {
                let found = table.call_site_returning_to(start + u64::from(site.return_offset));
                assert_eq!(
                    found.map(|(_, s)| s.to_call_site()).as_ref(),
                    (!site.handlers.is_empty()).then_some(site),
                    "{arch}"
                );
            }
        }
    }

    /// A byte array at `base`, in the target's byte order.
    struct Bytes {
        base: u64,
        data: Vec<u8>,
        endianness: Endianness,
    }

    impl Memory for Bytes {
        fn endianness(&self) -> Endianness {
            self.endianness
        }
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
            let start = addr
                .checked_sub(self.base)
                .and_then(|o| usize::try_from(o).ok())
                .filter(|&o| o + buf.len() <= self.data.len())
                .ok_or(Error::Memory {
                    address: addr,
                    message: "outside the test frame".into(),
                })?;
            buf.copy_from_slice(&self.data[start..start + buf.len()]);
            Ok(())
        }
        fn write(&mut self, _: u64, _: &[u8]) -> Result<(), Error> {
            unreachable!("context_value only reads")
        }
    }

    /// Contexts of real Cranelift call sites read back from a frame laid out
    /// as the site describes, on every ISA: a stack context at `fp -
    /// frame_offset + sp_offset`, a register context from the frame's
    /// callee-saved register values.
    #[test]
    fn context_values_read_from_a_frame() {
        let clif = "
function %f(i64, i64) -> i64 {
    sig0 = (i64) -> i64 tail
    sig1 = (i64) -> i64 system_v
    fn0 = %g sig0
    fn1 = %h sig1
block0(v0: i64, v1: i64):
    try_call fn0(v0), sig0, block1(ret0), [ context v1, default: block3(exn0) ]
block1(v2: i64):
    try_call fn1(v2), sig1, block2(ret0), [ context v2, default: block3(exn0) ]
block2(v4: i64):
    return v4
block3(v3: i64):
    return v3
}
";
        for arch in Arch::ALL {
            let isa = default_isa(arch).unwrap();
            let func = cranelift_reader::parse_functions(clif).unwrap().remove(0);
            let f = compile_function(&*isa, func).unwrap();
            let table =
                ExceptionTable::new(vec![(FunctionEntry::new(&f, 0x1000), &f.call_sites[..])])
                    .unwrap();
            let fp = 0x8000u64;
            let value = 0x1122_3344_5566_7788u64;
            let mut seen = (false, false);
            for site in table.call_sites(0) {
                for handler in site.handlers() {
                    let Handler::Context(location) = handler else {
                        continue;
                    };
                    let (memory, saved): (Bytes, Box<dyn Fn(Reg) -> Option<u64>>) = match location {
                        ContextLocation::Stack { sp_offset } => {
                            seen.0 = true;
                            let sp = fp - u64::from(site.frame_offset().unwrap());
                            let mut data = vec![0xa5; 0x400];
                            let at = usize::try_from(sp + u64::from(sp_offset) - 0x7c00).unwrap();
                            data[at..at + 8].copy_from_slice(&arch.endianness().write_u64(value));
                            let memory = Bytes {
                                base: 0x7c00,
                                data,
                                endianness: arch.endianness(),
                            };
                            (memory, Box::new(|_| None))
                        }
                        ContextLocation::Register(reg) => {
                            seen.1 = true;
                            let memory = Bytes {
                                base: 0,
                                data: Vec::new(),
                                endianness: arch.endianness(),
                            };
                            (memory, Box::new(move |r| (r == reg).then_some(value)))
                        }
                    };
                    let got = site.context_value(location, fp, &*saved, &memory);
                    assert_eq!(got.unwrap(), value, "{arch} {location:?}");
                }
            }
            assert_eq!(seen, (true, true), "{arch}: both kinds of location");

            // A register the frame has no value for is an error naming the
            // call site, not a panic.
            let site = table
                .call_sites(0)
                .find(|s| {
                    s.handlers()
                        .any(|h| matches!(h, Handler::Context(ContextLocation::Register(_))))
                })
                .unwrap();
            let Some(Handler::Context(location)) = site.handlers().next() else {
                panic!("{arch}: {site:?}");
            };
            let empty = Bytes {
                base: 0,
                data: Vec::new(),
                endianness: arch.endianness(),
            };
            let err = site
                .context_value(location, fp, &|_| None, &empty)
                .unwrap_err();
            assert!(err.to_string().contains("%f+0x"), "{err}");
        }
    }
}
