//! Per-function metadata of a linked image, searchable by program counter:
//! call sites with their handlers, trap sites, and callee-saved register slots.

use crate::compile::{CallSite, CompiledFunction, ContextLocation, Handler, TrapSite};
use crate::error::Error;
use crate::isa::{Reg, SavedRegister};
use crate::memory::Memory;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{compile_function, default_isa};
    use crate::isa::{Arch, Endianness};

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
