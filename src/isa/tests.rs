//! Unit tests of the ISA-independent facts (stub rows, absolute
//! relocations, the context layout), and the helpers the per-ISA unit tests
//! share: applying one relocation, compiling CLIF for an ISA, and the CLIF
//! of a function that references functions and data symbols in every way
//! Cranelift relocates.

use std::fmt::Write as _;

use cranelift_codegen::isa::TargetIsa;

use super::*;
use crate::compile::{CompiledFunction, compile_function};
use crate::disassemble::{disassemble, disassemble_rows};

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

/// Every stub disassembles, instruction by instruction, to exactly the
/// rows written for it: each row's bytes are one instruction, printed as
/// the row's text.
#[test]
fn stubs_match_their_rows() {
    for arch in Arch::ALL {
        let spec = arch.spec();
        for (what, stub) in [
            ("throw", spec.throw_stub()),
            ("resume", spec.resume_stub()),
            ("to_entry", spec.to_entry_stub()),
        ] {
            assert!(!stub.code.is_empty(), "{arch} {what} stub is empty");
            let joined: Vec<u8> = stub
                .rows
                .iter()
                .flat_map(|(b, _)| b.iter().copied())
                .collect();
            assert_eq!(stub.code, joined, "{arch} {what} code");
            let actual = disassemble_rows(arch, stub.code).unwrap();
            assert_eq!(actual.len(), stub.rows.len(), "{arch} {what} row count");
            for (i, ((bytes, text), (want_bytes, want_text))) in
                actual.iter().zip(stub.rows).enumerate()
            {
                assert_eq!(bytes, want_bytes, "{arch} {what} row {i}: {want_text}");
                assert_eq!(text, want_text, "{arch} {what} row {i}");
            }
            let listing = disassemble(arch, stub.code).unwrap();
            assert_eq!(listing, stub.listing(), "{arch} {what} listing");
        }
    }
}

#[test]
fn absolute_relocations_follow_byte_order_and_abs32_range() {
    let mut code = [0xaau8; 12];
    apply_absolute(
        Reloc::Abs8,
        &mut code,
        2,
        0x1122_3344_5566_7788,
        Endianness::Big,
    )
    .unwrap();
    assert_eq!(code[2..10], 0x1122_3344_5566_7788u64.to_be_bytes());
    assert_eq!((code[1], code[10]), (0xaa, 0xaa));
    apply_absolute(
        Reloc::Abs8,
        &mut code,
        4,
        0x0102_0304_0506_0708,
        Endianness::Little,
    )
    .unwrap();
    assert_eq!(code[4..12], 0x0102_0304_0506_0708u64.to_le_bytes());
    for (value, field) in [
        (0xffff_fff0u64, 0xffff_fff0u32),
        ((-16i64) as u64, 0xffff_fff0),
    ] {
        let mut code = [0u8; 4];
        apply_absolute(Reloc::Abs4, &mut code, 0, value, Endianness::Little).unwrap();
        assert_eq!(code, field.to_le_bytes());
    }
    let mut code = [0u8; 8];
    for value in [0x1_0000_0000u64, (-(1i64 << 31) - 1) as u64] {
        assert_eq!(
            apply_absolute(Reloc::Abs4, &mut code, 0, value, Endianness::Big),
            Err(RelocError::OutOfRange {
                value: value as i64
            })
        );
    }
    assert!(apply_absolute(Reloc::Abs8, &mut code, 1, 0, Endianness::Big).is_err());
    assert_eq!(
        apply_absolute(Reloc::X86PCRel4, &mut code, 0, 0, Endianness::Little),
        Err(RelocError::Unsupported)
    );
}

#[test]
fn context_size_is_16_byte_aligned() {
    for arch in Arch::ALL {
        let n = arch.spec().callee_saved().len();
        assert_eq!(context::size_bytes(n) % 16, 0);
        assert!(context::size_bytes(n) >= (context::SAVED + n) * 8);
    }
}
