//! Compiling small CLIF functions with ISA flags and reading the code
//! Cranelift emits: the helpers of the emulator and QEMU suites that check
//! instructions an emulated CPU lacks.

use std::fmt::Debug;

use cranelift_exn::Module;
use cranelift_exn::codegen::Context;
use cranelift_exn::codegen::control::ControlPlane;
use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir;
use cranelift_exn::codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_exn::codegen::settings::{self, Configurable};
use cranelift_exn::compile::build_isa;
use cranelift_exn::isa::Arch;

/// The ISA for `arch` with `flags` enabled (and the flags every
/// cranelift-exn compilation forces).
pub fn isa(arch: Arch, flags: &[&str]) -> OwnedTargetIsa {
    let mut builder = cranelift_exn::codegen::isa::lookup(arch.triple()).unwrap();
    for flag in flags {
        builder
            .enable(flag)
            .unwrap_or_else(|e| panic!("{arch} {flag}: {e}"));
    }
    let raw = builder
        .finish(settings::Flags::new(settings::builder()))
        .unwrap();
    build_isa(
        arch,
        &settings::Flags::new(settings::builder()),
        &raw.isa_flags(),
    )
    .unwrap()
}

/// `{signature} {` + `{block}:` + `body` + `}`; the instructions of
/// `body` are separated by new lines or by `; `, and those declaring stack
/// slots (`ssN = ...`) go before the block.
pub fn function(signature: &str, block: &str, body: &str) -> ir::Function {
    let body = body.replace("; ", "\n");
    let (slots, insts): (Vec<&str>, Vec<&str>) = body
        .lines()
        .partition(|line| line.trim_start().starts_with("ss"));
    let (slots, insts) = (slots.join("\n"), insts.join("\n"));
    let text = format!("{signature} {{\n{slots}\n{block}:\n{insts}\n}}\n");
    let mut functions =
        cranelift_exn::reader::parse_functions(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    functions.remove(0)
}

/// `function %f(i64, i64) -> i64 system_v` with `body` (as [`function`]
/// takes it) after `block0(v0: i64, v1: i64)`.
pub fn binary_function(body: &str) -> ir::Function {
    function(
        "function %f(i64, i64) -> i64 system_v",
        "block0(v0: i64, v1: i64)",
        body,
    )
}

/// Machine code and VCode listing of `func` compiled for `isa`.
pub fn compile(isa: &dyn TargetIsa, func: ir::Function) -> (Vec<u8>, String) {
    let mut ctx = Context::for_function(func);
    ctx.set_disasm(true);
    let compiled = ctx
        .compile(isa, &mut ControlPlane::default())
        .unwrap_or_else(|e| panic!("{:?}", e.inner));
    (
        compiled.code_buffer().to_vec(),
        compiled.vcode.clone().unwrap_or_default(),
    )
}

/// Whether a VCode listing has `mnemonic` as an instruction (also inside
/// the `;`-separated sequences of pseudo-instructions such as atomic loops).
pub fn listing_has(listing: &str, mnemonic: &str) -> bool {
    listing
        .lines()
        .flat_map(|line| line.split(';'))
        .any(|part| {
            let mut words = part.split_whitespace();
            let first = words.next();
            // A loop's label (`0:`) comes before its first instruction.
            let first = if first.is_some_and(|w| w.ends_with(':')) {
                words.next()
            } else {
                first
            };
            first == Some(mnemonic)
        })
}

/// The first function of the CLIF text `clif`.
pub fn parse(clif: &str) -> ir::Function {
    let mut functions =
        cranelift_exn::reader::parse_functions(clif).unwrap_or_else(|e| panic!("{e}\n{clif}"));
    functions.remove(0)
}

/// Check that `%f(a, b)` of `module`, a function of two `i64` arguments
/// returning one, gives `expected(a, b)` for every `a` of `firsts` and `b`
/// of `seconds`; `label` names the function in messages.
pub fn assert_binary_results(
    module: &Module,
    firsts: &[u64],
    seconds: &[u64],
    expected: fn(u64, u64) -> u64,
    label: &dyn Debug,
) {
    for &a in firsts {
        for &b in seconds {
            let args = [DataValue::I64(a as i64), DataValue::I64(b as i64)];
            let got = module
                .call("%f", &args)
                .unwrap_or_else(|e| panic!("{label:?} ({a:#x}, {b:#x}): {e}"));
            let want = expected(a, b);
            assert_eq!(
                got,
                [DataValue::I64(want as i64)],
                "{label:?} ({a:#x}, {b:#x}): want {want:#x}"
            );
        }
    }
}

/// The CLIF of `%name`, which calls `%callee` with its one argument and
/// returns what it returns; both have `signature` (such as
/// `(i64) -> i64 tail`).
pub fn forwarding(name: &str, callee: &str, signature: &str) -> String {
    format!(
        "function %{name}{signature} {{
    fn0 = %{callee}{signature}
block0(v0: i64):
    v1 = call fn0(v0)
    return v1
}}"
    )
}

/// The CLIF of `signature` (such as `%outer(i64) -> i64`), which calls
/// `callee` (such as `%middle(i64) -> i64 tail`) with its argument and
/// returns `op result, k` (`op`: `iadd`, `imul`, ...).
pub fn call_then(signature: &str, callee: &str, op: &str, k: i64) -> String {
    format!(
        "function {signature} {{
    fn0 = {callee}
block0(v0: i64):
    v1 = call fn0(v0)
    v2 = iconst.i64 {k}
    v3 = {op} v1, v2
    return v3
}}
"
    )
}
