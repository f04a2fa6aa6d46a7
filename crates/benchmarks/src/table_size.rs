//! Exception-table size: ours against wasmtime-internal-unwinder's
//! serialized format, over the functions of a filetests corpus.
//!
//! Every function of every `.clif` file that contains `try_call` is
//! compiled for x86_64 with default flags. Both tables are measured over
//! the same functions: those wasmtime's format can represent (a call-site
//! context kept in a register cannot be; such functions are counted and
//! left out of both).
//!
//! *Ours* is the [`ExceptionTable`] the unwinder reads in place, built over
//! the measured functions laid out as one image (16-byte aligned, as
//! wasmtime's offsets), and measured with [`ExceptionTable::bytes`]: the
//! `u32` columns it allocates for call sites with handlers (function index,
//! return offset, frame offset, end of the handler rows), the two `u32`
//! handler columns (tag, handler offset or context marker: one row per tag,
//! default and context entry), and the return-address index the walk
//! probes once per frame (two `u32` slots per site with handlers). Plain
//! calls are not stored. Left out: the function table beside it (each
//! function's bounds, name, trap sites and callee-saved slots, which the
//! walk needs for every frame and wasmtime keeps elsewhere too) and the
//! fixed `Box` headers of the columns (16 bytes each, per image), as
//! wasmtime's `Vec` header and parsed view are. *Wasmtime's* is
//! `ExceptionTableBuilder::to_vec()`, which omits plain calls too.

use std::path::{Path, PathBuf};

use cranelift_exn::compile::{
    CallSite, CompiledFunction, ContextLocation, Handler, compile_function,
};
use cranelift_exn::exception_table::{ExceptionTable, FunctionEntry};
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
    /// Our table: everything below, bytes.
    pub ours_bytes: usize,
    /// Of which the per-site columns (4 × `u32` per `try_call` site).
    pub ours_site_bytes: usize,
    /// Of which the handler columns (2 × `u32` per tag, default or
    /// context entry).
    pub ours_handler_bytes: usize,
    /// Of which the return-address index.
    pub ours_index_bytes: usize,
    /// wasmtime-internal-unwinder's serialized table, bytes.
    pub wasmtime_bytes: usize,
}

impl TableSizes {
    /// Ours / wasmtime's.
    pub fn ratio(&self) -> f64 {
        self.ours_bytes as f64 / self.wasmtime_bytes.max(1) as f64
    }

    /// Bytes per `try_call` site.
    pub fn per_site(bytes: usize, sites: usize) -> f64 {
        if sites == 0 {
            0.0
        } else {
            bytes as f64 / sites as f64
        }
    }
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

/// Where the measured functions are laid out (any address would do: the
/// table stores function-relative offsets).
const IMAGE_BASE: u64 = 0x1_0000;

/// Measure both tables over the functions of `files`.
pub fn measure(files: &[PathBuf]) -> Result<TableSizes, String> {
    let isa = cranelift_exn::compile::default_isa(Arch::X86_64).map_err(|e| e.to_string())?;
    let mut sizes = TableSizes {
        files: files.len(),
        ..TableSizes::default()
    };
    let mut builder = ExceptionTableBuilder::default();
    let mut ours: Vec<(FunctionEntry, Vec<CallSite>)> = Vec::new();
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
            ours.push((
                FunctionEntry::new(&f, IMAGE_BASE + u64::from(offset)),
                f.call_sites.clone(),
            ));
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
        }
    }
    let table = ExceptionTable::new(ours).map_err(|e| e.to_string())?;
    let bytes = table.bytes();
    if (bytes.sites, bytes.rows) != (sizes.try_call_sites, sizes.handlers + sizes.contexts) {
        return Err(format!(
            "our table stores {} sites and {} rows, not {} and {}",
            bytes.sites,
            bytes.rows,
            sizes.try_call_sites,
            sizes.handlers + sizes.contexts
        ));
    }
    sizes.ours_site_bytes = bytes.site_columns;
    sizes.ours_handler_bytes = bytes.handler_columns;
    sizes.ours_index_bytes = bytes.index;
    sizes.ours_bytes = bytes.total();
    sizes.wasmtime_bytes = builder.to_vec().len();
    Ok(sizes)
}
