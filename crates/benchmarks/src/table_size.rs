//! Exception-table size: ours against wasmtime-internal-unwinder's
//! serialized format, over the functions of a filetests corpus.
//!
//! Every function of every `.clif` file that contains `try_call` is
//! compiled for x86_64 with default flags. Both tables are measured over
//! the same functions: those wasmtime's format can represent (a call-site
//! context kept in a register cannot be; such functions are counted and
//! left out of both).
//!
//! *Ours* has no serialized form: the unwinder searches
//! `exception_table::FunctionEntry::call_sites`, a `Vec<CallSite>` per
//! function, each `CallSite` owning a `Vec<Handler>`. Its size here is the
//! in-memory size of exactly that: the `Vec` header per function, one
//! `CallSite` per call site, one `Handler` per handler-list entry (tags,
//! defaults and contexts), without allocator overhead, plus the
//! return-address index the walk probes once per frame (16-byte slots, a
//! power of two at least twice the call sites, one index over the whole
//! corpus as if it were one image). It keeps *every*
//! call site, with or without handlers (the walk looks the return address
//! up in each frame), so it is given twice: as stored, and counting only
//! `try_call` sites. *Wasmtime's* is `ExceptionTableBuilder::to_vec()`,
//! which omits call sites without handlers.

use std::mem::size_of;
use std::path::{Path, PathBuf};

use cranelift_exn::compile::{
    CallSite, CompiledFunction, ContextLocation, Handler, compile_function,
};
use cranelift_exn::isa::Arch;
use wasmtime_internal_unwinder::ExceptionTableBuilder;

/// Sizes over one corpus.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// `.clif` files containing `try_call`.
    pub files: usize,
    /// Files that did not parse (left out).
    pub unparsed_files: usize,
    /// Functions measured.
    pub functions: usize,
    /// Functions that did not compile for x86_64 with default flags (many
    /// corpus files test other targets' flags or are verifier failures),
    /// including those Cranelift panics on.
    pub uncompiled_functions: usize,
    /// Functions left out because a call-site context is in a register.
    pub register_context_functions: usize,
    /// Call sites of every kind in the measured functions.
    pub call_sites: usize,
    /// Call sites with at least one handler-list entry (`try_call`s).
    pub try_call_sites: usize,
    /// Tag and default handlers.
    pub handlers: usize,
    /// Context entries (`context vN`).
    pub contexts: usize,
    /// Our table as stored (every call site), bytes.
    pub ours_bytes: usize,
    /// Our table counting only `try_call` sites, bytes.
    pub ours_try_only_bytes: usize,
    /// wasmtime-internal-unwinder's serialized table, bytes.
    pub wasmtime_bytes: usize,
}

impl TableSizes {
    /// Bytes per `try_call` site.
    pub fn per_site(bytes: usize, sites: usize) -> f64 {
        if sites == 0 {
            0.0
        } else {
            bytes as f64 / sites as f64
        }
    }
}

/// In-memory bytes of one function's call-site records (see the module
/// documentation); `try_only` counts only sites with handlers.
pub fn ours_bytes(sites: &[CallSite], try_only: bool) -> usize {
    size_of::<Vec<CallSite>>()
        + sites
            .iter()
            .filter(|s| !try_only || !s.handlers.is_empty())
            .map(|s| size_of::<CallSite>() + s.handlers.len() * size_of::<Handler>())
            .sum::<usize>()
}

fn has_register_context(f: &CompiledFunction) -> bool {
    f.call_sites.iter().any(|s| {
        s.handlers
            .iter()
            .any(|h| matches!(h, Handler::Context(ContextLocation::Register(_))))
    })
}

/// `.clif` files under `dir` (recursively) whose text contains `try_call`.
pub fn try_call_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| format!("{}: {e}", d.display()))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "clif") {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if text.contains("try_call") {
                    out.push(path);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Measure both tables over the functions of `files`.
pub fn measure(files: &[PathBuf]) -> Result<TableSizes, String> {
    let isa = cranelift_exn::compile::default_isa(Arch::X86_64).map_err(|e| e.to_string())?;
    let mut sizes = TableSizes {
        files: files.len(),
        ..TableSizes::default()
    };
    let mut builder = ExceptionTableBuilder::default();
    let mut offset = 0u32;
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let Ok(functions) = cranelift_reader::parse_functions(&text) else {
            sizes.unparsed_files += 1;
            continue;
        };
        for func in functions {
            // Some corpus functions make Cranelift itself panic for this
            // target (a calling convention x86_64 does not implement):
            // count them with those that do not compile.
            let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                compile_function(&*isa, func)
            }));
            let Ok(Ok(f)) = compiled else {
                sizes.uncompiled_functions += 1;
                continue;
            };
            if has_register_context(&f) {
                sizes.register_context_functions += 1;
                continue;
            }
            crate::wasmtime::add_functions(
                &mut builder,
                [(offset, f.name.as_str(), &f.call_sites[..])],
            )?;
            offset = offset
                .checked_add(u32::try_from(f.code.len()).map_err(|e| e.to_string())?)
                .and_then(|o| o.checked_next_multiple_of(16))
                .ok_or("corpus code larger than 4 GiB")?;
            sizes.functions += 1;
            sizes.call_sites += f.call_sites.len();
            for site in &f.call_sites {
                if !site.handlers.is_empty() {
                    sizes.try_call_sites += 1;
                }
                for h in &site.handlers {
                    match h {
                        Handler::Context(_) => sizes.contexts += 1,
                        _ => sizes.handlers += 1,
                    }
                }
            }
            sizes.ours_bytes += ours_bytes(&f.call_sites, false);
            sizes.ours_try_only_bytes += ours_bytes(&f.call_sites, true);
        }
    }
    sizes.ours_bytes += cranelift_exn::exception_table::return_index_bytes(sizes.call_sites);
    sizes.ours_try_only_bytes +=
        cranelift_exn::exception_table::return_index_bytes(sizes.try_call_sites);
    sizes.wasmtime_bytes = builder.to_vec().len();
    Ok(sizes)
}
