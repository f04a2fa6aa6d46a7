//! Helpers shared by the per-ISA unit tests: applying one relocation,
//! compiling CLIF for an ISA, and the CLIF of a function that references
//! functions and data symbols in every way Cranelift relocates.

use std::fmt::Write as _;

use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::isa::TargetIsa;

use super::{IsaSpec, RelocError, RelocSite};
use crate::compile::{CompiledFunction, compile_function};

/// No memory to read: the `value_at` of relocations that need none.
pub(crate) fn no_values(_: u64) -> Option<u64> {
    None
}

impl IsaSpec {
    /// Apply one relocation of this ISA to `code` loaded at `base`; the
    /// field is at `offset`.
    pub(crate) fn apply_at(
        &self,
        kind: Reloc,
        code: &mut [u8],
        offset: usize,
        base: u64,
        target: u64,
        addend: i64,
    ) -> Result<(), RelocError> {
        self.apply_relocation(RelocSite {
            kind,
            code,
            offset,
            place: base + offset as u64,
            target,
            addend,
            value_at: &no_values,
        })
    }
}

/// Every function of `clif`, compiled for `isa`.
pub(crate) fn compile_clif(isa: &dyn TargetIsa, clif: &str) -> Vec<CompiledFunction> {
    cranelift_reader::parse_functions(clif)
        .unwrap()
        .into_iter()
        .map(|f| compile_function(isa, f).unwrap())
        .collect()
}

/// The opening of a `system_v` function `%name(i64) -> i64` that calls
/// `near` (declared colocated) and then `far` with its argument, takes both
/// their addresses and the address of each symbol of `symbols` (written as
/// after `symbol`: `colocated %data+16`, `%far_data-8`), and adds them all
/// up. `decls` are further declarations (first) that the caller's ending
/// uses.
///
/// Returns the text, which ends inside `block0`, and the number of the
/// value holding the sum: the caller writes the rest of the function.
pub(crate) fn symbol_sum_clif(
    name: &str,
    (near, far): (&str, &str),
    symbols: &[&str],
    decls: &[&str],
) -> (String, usize) {
    let mut clif = format!("function {name}(i64) -> i64 system_v {{\n");
    // First, as explicit signatures must precede the implicit ones of
    // function declarations.
    for decl in decls {
        writeln!(clif, "{decl}").unwrap();
    }
    writeln!(clif, "fn0 = colocated {near}(i64) -> i64 system_v").unwrap();
    writeln!(clif, "fn1 = {far}(i64) -> i64 system_v").unwrap();
    for (i, symbol) in symbols.iter().enumerate() {
        writeln!(clif, "gv{i} = symbol {symbol}").unwrap();
    }
    clif.push_str(
        "block0(v0: i64):\n\
         v1 = call fn0(v0)\n\
         v2 = call fn1(v1)\n\
         v3 = func_addr.i64 fn0\n\
         v4 = func_addr.i64 fn1\n",
    );
    // v5.. are the symbols' addresses; then each sum adds the next value.
    let addresses = 5 + symbols.len();
    for (i, value) in (5..addresses).enumerate() {
        writeln!(clif, "v{value} = symbol_value.i64 gv{i}").unwrap();
    }
    let mut sum = 2;
    for (value, next) in (addresses..).zip(3..addresses) {
        writeln!(clif, "v{value} = iadd v{sum}, v{next}").unwrap();
        sum = value;
    }
    (clif, sum)
}

/// `%tls` returns the address of a colocated thread-local symbol `%t`.
pub(crate) const TLS_CLIF: &str = "function %tls() -> i64 system_v {
    gv0 = symbol colocated tls %t
block0:
    v0 = tls_value.i64 gv0
    return v0
}";
