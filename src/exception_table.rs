//! Per-function metadata of a linked image, searchable by program counter:
//! call sites with their handlers, trap sites, and callee-saved register slots.

use crate::compile::{
    CallSite, CompiledFunction, ContextLocation, FunctionKind, Handler, TrapSite,
};
use crate::error::Error;
use crate::isa::{Arch, Reg, SavedRegister, context};
use crate::memory::Memory;

/// Entry trampolines' names start with this prefix (the unwinder knows them
/// by [`FunctionEntry::kind`], not by name).
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
    /// Whether this is an entry trampoline or other code.
    pub kind: FunctionKind,
    /// `saved_registers` as the unwinder restores them: (context word,
    /// offset from the frame-pointer value), for the registers the ISA's
    /// throw context holds (see [`crate::isa::context::SAVED`]).
    pub(crate) restore: Vec<(usize, i64)>,
}

impl FunctionEntry {
    /// Whether this is an entry trampoline.
    #[inline]
    pub fn is_entry_trampoline(&self) -> bool {
        self.kind == FunctionKind::EntryTrampoline
    }

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
            kind: f.kind,
            restore: restore_slots(f.arch, &f.saved_registers),
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

/// The context words and frame slots of `saved` (see
/// [`FunctionEntry::restore`]); registers the context does not hold are
/// left out.
pub(crate) fn restore_slots(arch: Arch, saved: &[SavedRegister]) -> Vec<(usize, i64)> {
    let order = arch.spec().callee_saved();
    saved
        .iter()
        .filter_map(|s| {
            let i = order.iter().position(|r| *r == s.reg)?;
            Some((context::SAVED + i, s.fp_offset))
        })
        .collect()
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

/// The value of an exception context of `site` (one of its
/// [`Handler::Context`] locations) in a frame being unwound.
///
/// `fp` is the frame's frame-pointer value; `saved` gives the value each
/// callee-saved register had in this frame, as an unwinder knows it after
/// restoring the save areas of every frame below (for the innermost frame:
/// the registers the throw stub captured). `name` (the function's) only
/// labels errors.
pub fn context_value(
    name: &str,
    site: &CallSite,
    location: ContextLocation,
    fp: u64,
    saved: &dyn Fn(Reg) -> Option<u64>,
    memory: &dyn Memory,
) -> Result<u64, Error> {
    let at = || {
        format!(
            "exception context of call site {name}+{:#x}",
            site.return_offset
        )
    };
    match location {
        ContextLocation::Stack { sp_offset } => {
            let frame_offset = site
                .frame_offset
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

/// All functions of an image, sorted by address, with an index of every
/// call site by its return address.
#[derive(Clone, Debug, Default)]
pub struct ExceptionTable {
    functions: Vec<FunctionEntry>,
    returns: ReturnIndex,
}

impl ExceptionTable {
    /// A table over `functions` (any order; they must not overlap).
    pub fn new(mut functions: Vec<FunctionEntry>) -> ExceptionTable {
        functions.sort_by_key(|f| f.start);
        let returns = ReturnIndex::new(&functions);
        ExceptionTable { functions, returns }
    }

    /// The function containing `pc`.
    pub fn function(&self, pc: u64) -> Option<&FunctionEntry> {
        let i = self.functions.partition_point(|f| f.start <= pc);
        let f = self.functions.get(i.checked_sub(1)?)?;
        (pc < f.end).then_some(f)
    }

    /// The call site whose return address is `pc`, with its function.
    pub fn call_site_returning_to(&self, pc: u64) -> Option<(&FunctionEntry, &CallSite)> {
        self.return_site(pc).map(|r| self.resolve(r))
    }

    /// What the unwinder needs first of a frame whose return address is
    /// `pc`: one hash probe.
    #[inline]
    pub(crate) fn return_site(&self, pc: u64) -> Option<ReturnSite> {
        self.returns.get(pc)
    }

    /// The function and call site of `site`.
    #[inline]
    pub(crate) fn resolve(&self, site: ReturnSite) -> (&FunctionEntry, &CallSite) {
        let f = &self.functions[site.function as usize];
        (f, &f.call_sites[(site.site & ReturnSite::INDEX) as usize])
    }

    /// Every function, by address.
    pub fn functions(&self) -> &[FunctionEntry] {
        &self.functions
    }
}

/// A call site found by its return address, with the two facts that decide
/// whether the unwinder must look further at its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReturnSite {
    function: u32,
    /// The site's index, with [`ReturnSite::HANDLERS`] and
    /// [`ReturnSite::RESTORES`] above it.
    site: u32,
}

impl ReturnSite {
    const HANDLERS: u32 = 1 << 31;
    const RESTORES: u32 = 1 << 30;
    const INDEX: u32 = Self::RESTORES - 1;

    /// Whether the call site has handlers (a `try_call`).
    #[inline]
    pub(crate) fn has_handlers(self) -> bool {
        self.site & Self::HANDLERS != 0
    }

    /// Whether the function saves callee-saved registers the unwinder
    /// restores.
    #[inline]
    pub(crate) fn restores(self) -> bool {
        self.site & Self::RESTORES != 0
    }
}

/// Return address → [`ReturnSite`]: open addressing with linear probing, at
/// most half full; 0 marks an empty slot (no code is loaded at address 0).
#[derive(Clone, Debug, Default)]
struct ReturnIndex {
    slots: Vec<(u64, ReturnSite)>,
    /// `64 - log2(slots.len())`: the hash keeps the top bits.
    shift: u32,
}

/// Bytes of the return-address index an [`ExceptionTable`] keeps for
/// `call_sites` call sites (its slots; the `Vec` header aside).
pub fn return_index_bytes(call_sites: usize) -> usize {
    ReturnIndex::slots_for(call_sites) * std::mem::size_of::<(u64, ReturnSite)>()
}

impl ReturnIndex {
    fn slots_for(call_sites: usize) -> usize {
        (call_sites * 2).next_power_of_two().max(8)
    }

    fn new(functions: &[FunctionEntry]) -> ReturnIndex {
        let count: usize = functions.iter().map(|f| f.call_sites.len()).sum();
        let len = Self::slots_for(count);
        let empty = ReturnSite {
            function: 0,
            site: 0,
        };
        let mut index = ReturnIndex {
            slots: vec![(0, empty); len],
            shift: 64 - len.trailing_zeros(),
        };
        for (fi, f) in functions.iter().enumerate() {
            for (si, site) in f.call_sites.iter().enumerate() {
                let pc = f.start + u64::from(site.return_offset);
                let mut flags = 0;
                if !site.handlers.is_empty() {
                    flags |= ReturnSite::HANDLERS;
                }
                if !f.restore.is_empty() {
                    flags |= ReturnSite::RESTORES;
                }
                let entry = ReturnSite {
                    function: u32::try_from(fi).expect("fewer than 2^32 functions"),
                    site: u32::try_from(si)
                        .ok()
                        .filter(|&si| si <= ReturnSite::INDEX)
                        .expect("fewer than 2^30 call sites in a function")
                        | flags,
                };
                let mask = len - 1;
                let mut i = index.slot(pc);
                while index.slots[i].0 != 0 && index.slots[i].0 != pc {
                    i = (i + 1) & mask;
                }
                index.slots[i] = (pc, entry);
            }
        }
        index
    }

    #[inline]
    fn slot(&self, pc: u64) -> usize {
        // Fibonacci hashing: return addresses differ in their low bits.
        (pc.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    #[inline]
    fn get(&self, pc: u64) -> Option<ReturnSite> {
        if pc == 0 || self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.slot(pc);
        loop {
            let (key, site) = self.slots[i];
            if key == pc {
                return Some(site);
            }
            if key == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{compile_function, default_isa};
    use crate::isa::Endianness;

    /// `count` functions of 0x100 bytes from 0x10000, function `i` with
    /// `i % 7` call sites 4 bytes apart, every third one with a handler.
    fn synthetic(count: usize) -> ExceptionTable {
        let functions = (0..count)
            .map(|i| {
                let start = 0x10000 + 0x100 * i as u64;
                FunctionEntry {
                    name: format!("%f{i}"),
                    start,
                    end: start + 0x100,
                    call_sites: (0..(i % 7) as u32)
                        .map(|k| CallSite {
                            return_offset: 8 + 4 * k,
                            frame_offset: Some(16),
                            handlers: if k % 3 == 0 {
                                vec![Handler::Default { offset: 0x80 }]
                            } else {
                                vec![]
                            },
                        })
                        .collect(),
                    traps: vec![],
                    saved_registers: vec![],
                    kind: FunctionKind::Code,
                    restore: if i % 2 == 0 {
                        vec![(context::SAVED, -8)]
                    } else {
                        vec![]
                    },
                }
            })
            .collect();
        ExceptionTable::new(functions)
    }

    #[test]
    fn every_return_address_finds_its_call_site_and_nothing_else_does() {
        for count in [0, 1, 2, 50, 1000] {
            let table = synthetic(count);
            let mut sites = 0;
            for f in table.functions() {
                for site in &f.call_sites {
                    let pc = f.start + u64::from(site.return_offset);
                    let hit = table.return_site(pc).expect("indexed");
                    let (found, found_site) = table.resolve(hit);
                    assert_eq!(
                        (found.start, found_site.return_offset),
                        (f.start, site.return_offset)
                    );
                    assert_eq!(hit.has_handlers(), !site.handlers.is_empty());
                    assert_eq!(hit.restores(), !f.restore.is_empty());
                    assert!(table.call_site_returning_to(pc).is_some());
                    // The bytes around a return address are no call site.
                    assert!(table.return_site(pc + 1).is_none());
                    assert!(table.return_site(pc - 1).is_none());
                    sites += 1;
                }
                assert!(table.return_site(f.start).is_none());
            }
            assert_eq!(sites, (0..count).map(|i| i % 7).sum::<usize>());
            assert!(table.return_site(0).is_none());
            assert!(table.return_site(u64::MAX).is_none());
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
            let entry = FunctionEntry::new(&f, 0x1000);
            let fp = 0x8000u64;
            let value = 0x1122_3344_5566_7788u64;
            let mut seen = (false, false);
            for site in &entry.call_sites {
                for handler in &site.handlers {
                    let Handler::Context(location) = *handler else {
                        continue;
                    };
                    let (memory, saved): (Bytes, Box<dyn Fn(Reg) -> Option<u64>>) = match location {
                        ContextLocation::Stack { sp_offset } => {
                            seen.0 = true;
                            let sp = fp - u64::from(site.frame_offset.unwrap());
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
                    let got = context_value(&f.name, site, location, fp, &*saved, &memory);
                    assert_eq!(got.unwrap(), value, "{arch} {location:?}");
                }
            }
            assert_eq!(seen, (true, true), "{arch}: both kinds of location");

            // A register the frame has no value for is an error naming the
            // call site, not a panic.
            let site = entry
                .call_sites
                .iter()
                .find(|s| {
                    s.handlers
                        .iter()
                        .any(|h| matches!(h, Handler::Context(ContextLocation::Register(_))))
                })
                .unwrap();
            let Some(Handler::Context(location)) = site.handlers.first().copied() else {
                panic!("{arch}: {site:?}");
            };
            let empty = Bytes {
                base: 0,
                data: Vec::new(),
                endianness: arch.endianness(),
            };
            let err = context_value("%f", site, location, fp, &|_| None, &empty).unwrap_err();
            assert!(err.to_string().contains("%f+0x"), "{err}");
        }
    }
}
