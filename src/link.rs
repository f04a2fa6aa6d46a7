//! The linker: compiled functions + a base address → image bytes and tables.
//!
//! Linking is pure (no I/O, no `unsafe`): the same functions can be laid out
//! at any base address for any of the four ISAs and checked byte for byte.

use std::collections::HashMap;

use crate::compile::{CompiledFunction, RelocTarget};
use crate::error::Error;
use crate::exception_table::{ExceptionTable, FunctionEntry};
use crate::isa::{Arch, RelocSite};

/// Functions are placed at this alignment.
pub const FUNCTION_ALIGN: u64 = 16;

/// A linked image: code for one base address, with its exception table.
#[derive(Clone, Debug)]
pub struct Image {
    /// Architecture of the code.
    pub arch: Arch,
    /// Address the image was linked for.
    pub base: u64,
    /// The bytes to place at `base`: every function, then the GOT (if any).
    pub code: Vec<u8>,
    /// Absolute address of every function by name (`%name` or `u0:1`).
    pub symbols: HashMap<String, u64>,
    /// Functions, call sites, handlers, trap sites and save slots.
    pub table: ExceptionTable,
}

impl Image {
    /// Absolute address of the function called `name`.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }
}

/// The size [`link`] will produce for these functions (so that memory can be
/// reserved before the base address is known).
pub fn image_size(arch: Arch, functions: &[CompiledFunction]) -> usize {
    let (_, code_end) = layout(functions);
    let got_slots = got_symbols(arch, functions).len() as u64;
    (code_end.next_multiple_of(8) + 8 * got_slots) as usize
}

fn layout(functions: &[CompiledFunction]) -> (Vec<u64>, u64) {
    let mut offsets = Vec::with_capacity(functions.len());
    let mut end = 0u64;
    for f in functions {
        let start = end.next_multiple_of(FUNCTION_ALIGN);
        offsets.push(start);
        end = start + f.code.len() as u64;
    }
    (offsets, end)
}

/// Symbols reached through the GOT, in first-use order.
fn got_symbols(arch: Arch, functions: &[CompiledFunction]) -> Vec<String> {
    let spec = arch.spec();
    let mut names: Vec<String> = Vec::new();
    for f in functions {
        for r in &f.relocs {
            if let RelocTarget::Symbol(name) = &r.target
                && spec.uses_got(r.kind)
                && !names.contains(name)
            {
                names.push(name.clone());
            }
        }
    }
    names
}

/// Link `functions` for `base`. Calls to names that are not among
/// `functions` resolve through `host` (for example `%__cranelift_throw`).
///
/// Every relocation is applied by the ISA; an unknown kind, an undefined
/// symbol or a displacement that does not fit is an [`Error::Link`] naming the
/// function, the offset and the kind.
pub fn link(
    arch: Arch,
    functions: &[CompiledFunction],
    base: u64,
    host: &HashMap<String, u64>,
) -> Result<Image, Error> {
    link_with(arch, functions, base, &|name| host.get(name).copied())
}

/// [`link`], resolving names outside `functions` with `external` (a
/// module's loaded symbols, looked up where they are rather than copied
/// into one map for each link).
pub fn link_with(
    arch: Arch,
    functions: &[CompiledFunction],
    base: u64,
    external: &dyn Fn(&str) -> Option<u64>,
) -> Result<Image, Error> {
    let spec = arch.spec();
    let (offsets, code_end) = layout(functions);
    let mut symbols = HashMap::new();
    for (f, &offset) in functions.iter().zip(&offsets) {
        if f.arch != arch {
            return Err(link_error(
                f,
                0,
                "arch",
                format!("compiled for {}, linking for {arch}", f.arch),
            ));
        }
        if symbols.insert(f.name.clone(), base + offset).is_some() {
            return Err(link_error(f, 0, "symbol", "defined twice".to_string()));
        }
    }
    let resolve = |name: &str| symbols.get(name).copied().or_else(|| external(name));

    let got_base = code_end.next_multiple_of(8);
    let got = got_symbols(arch, functions);
    let mut code = vec![0u8; image_size(arch, functions)];
    for (i, name) in got.iter().enumerate() {
        let value = resolve(name).ok_or_else(|| Error::Link {
            function: "<got>".into(),
            offset: 0,
            kind: "symbol".into(),
            message: format!("undefined symbol {name}"),
        })?;
        let at = (got_base + 8 * i as u64) as usize;
        code[at..at + 8].copy_from_slice(&arch.endianness().write_u64(value));
    }
    let got_slot = |name: &str| {
        got.iter()
            .position(|n| n == name)
            .map(|i| base + got_base + 8 * i as u64)
    };

    for (f, &offset) in functions.iter().zip(&offsets) {
        let start = offset as usize;
        let func_base = base + offset;
        // `target + addend` of every relocation in this function, by address,
        // for relocations that refer to another one (RISC-V `%pcrel_lo`).
        let mut values = HashMap::new();
        let mut targets = Vec::with_capacity(f.relocs.len());
        for r in &f.relocs {
            let target = match &r.target {
                RelocTarget::Label(label) => {
                    if *label as usize > f.code.len() {
                        return Err(link_error(
                            f,
                            r.offset,
                            &format!("{:?}", r.kind),
                            format!("label offset {label:#x} is outside the function"),
                        ));
                    }
                    func_base + u64::from(*label)
                }
                RelocTarget::Symbol(name) if spec.uses_got(r.kind) => {
                    got_slot(name).expect("every GOT symbol has a slot")
                }
                RelocTarget::Symbol(name) => resolve(name).ok_or_else(|| {
                    link_error(
                        f,
                        r.offset,
                        &format!("{:?}", r.kind),
                        format!("undefined symbol {name}"),
                    )
                })?,
            };
            values.insert(
                func_base + u64::from(r.offset),
                target.wrapping_add_signed(r.addend),
            );
            targets.push(target);
        }
        let value_at = |addr: u64| values.get(&addr).copied();
        let code_slice = &mut code[start..start + f.code.len()];
        code_slice.copy_from_slice(&f.code);
        spec.repair_code(code_slice);
        for (r, &target) in f.relocs.iter().zip(&targets) {
            spec.apply_relocation(RelocSite {
                kind: r.kind,
                code: code_slice,
                offset: r.offset as usize,
                place: func_base + u64::from(r.offset),
                target,
                addend: r.addend,
                value_at: &value_at,
            })
            .map_err(|e| link_error(f, r.offset, &format!("{:?}", r.kind), e.to_string()))?;
        }
    }

    let entries = functions
        .iter()
        .zip(&offsets)
        .map(|(f, &offset)| (FunctionEntry::new(f, base + offset), &f.call_sites[..]))
        .collect();
    Ok(Image {
        arch,
        base,
        code,
        symbols,
        table: ExceptionTable::new(entries)?,
    })
}

fn link_error(f: &CompiledFunction, offset: u32, kind: &str, message: String) -> Error {
    Error::Link {
        function: f.name.clone(),
        offset,
        kind: kind.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{compile_function, default_isa};

    fn compiled(arch: Arch, text: &str) -> Vec<CompiledFunction> {
        let isa = default_isa(arch).unwrap();
        cranelift_reader::parse_functions(text)
            .unwrap()
            .into_iter()
            .map(|f| compile_function(isa.as_ref(), f).unwrap())
            .collect()
    }

    const CALLS_HOST: &str = "
function %f() -> i64 {
    fn0 = colocated %host() -> i64
block0:
    v0 = call fn0()
    return v0
}
";

    #[test]
    fn an_undefined_symbol_names_function_offset_and_kind() {
        for arch in Arch::ALL {
            let functions = compiled(arch, CALLS_HOST);
            let err = link(arch, &functions, 0x10000, &HashMap::new()).unwrap_err();
            let reloc = &functions[0].relocs[0];
            assert_eq!(
                err,
                Error::Link {
                    function: "%f".into(),
                    offset: reloc.offset,
                    kind: format!("{:?}", reloc.kind),
                    message: "undefined symbol %host".into(),
                },
                "{arch}"
            );
        }
    }

    /// A near (colocated) call to a symbol beyond the instruction's reach is
    /// an error, never a silently truncated displacement.
    #[test]
    fn an_out_of_range_call_is_an_error() {
        for arch in Arch::ALL {
            let functions = compiled(arch, CALLS_HOST);
            let far = HashMap::from([("%host".to_string(), 0x10000 + (1u64 << 40))]);
            match link(arch, &functions, 0x10000, &far) {
                Err(Error::Link {
                    function, message, ..
                }) => {
                    assert_eq!(function, "%f", "{arch}");
                    assert!(message.contains("out of range"), "{arch}: {message}");
                }
                other => panic!("{arch}: {other:?}"),
            }
            let near = HashMap::from([("%host".to_string(), 0x20000)]);
            assert!(link(arch, &functions, 0x10000, &near).is_ok(), "{arch}");
        }
    }

    #[test]
    fn linking_is_pure_and_base_relative() {
        let arch = Arch::Aarch64;
        let functions = compiled(arch, CALLS_HOST);
        let host = |base: u64| HashMap::from([("%host".to_string(), base + 0x1000)]);
        let a = link(arch, &functions, 0x10000, &host(0x10000)).unwrap();
        let b = link(arch, &functions, 0x10000, &host(0x10000)).unwrap();
        let c = link(arch, &functions, 0x50000, &host(0x50000)).unwrap();
        assert_eq!(a.code, b.code);
        // Only relative references: the same bytes at another base.
        assert_eq!(a.code, c.code);
        assert_eq!(c.symbol("%f"), Some(0x50000));
    }
}
