//! Entry trampolines: the only way host code calls JIT code.
//!
//! For a signature `S`, one function is generated in CLIF, C convention,
//! `(callee, buffer)`: it records the address of its own catch-all handler
//! (`get_exception_handler_address`), its stack pointer and frame-pointer
//! value in the buffer header and presets the status word to "exception",
//! loads the arguments from the buffer's slots, `try_call`s `callee` with
//! `S` and a `default` handler, and on return stores the results and sets
//! the status to "returned". The handler only returns: an exception (or a
//! trap) nobody else catches lands there with the status still preset.
//!
//! What the handler may rely on is the frame alone. It is reached with the
//! recorded sp and fp, but every other register may hold what the code
//! that threw or trapped left in it — for a `system_v` callee Cranelift
//! assumes the callee-saved registers survive the exceptional edge, which
//! an O(1) delivery does not make true. The handler reads none of them (it
//! uses no value defined before the call), and the epilogue restores the
//! registers the trampoline itself saved from its own frame. The others of
//! the host's callee-saved registers are not restored: the host calls the
//! trampoline as a function that clobbers every register (the native
//! machine's call does, `crate::native`), except when the callee cannot
//! throw or trap, which is the only way to call it as a plain C function.
//! (For a `tail` callee Cranelift treats every register as clobbered on the
//! exceptional edge, so that trampoline saves and restores all of them.)

use cranelift_codegen::ir::{self, types};
use cranelift_codegen::isa::CallConv;

pub use crate::abi::{
    HANDLER_FP_OFFSET, HANDLER_PC_OFFSET, HANDLER_SP_OFFSET, SLOT_SIZE, STATUS_EXCEPTION,
    STATUS_OFFSET, STATUS_RETURNED, VALUES_OFFSET,
};
use crate::exception_table::ENTRY_TRAMPOLINE_PREFIX;

/// Bytes a buffer needs for `sig`.
pub fn buffer_size(sig: &ir::Signature) -> usize {
    let slots = sig.params.len().max(sig.returns.len());
    VALUES_OFFSET as usize + slots * SLOT_SIZE as usize
}

/// Name of the entry trampoline for signature number `index`.
pub fn name(index: usize) -> String {
    format!("{ENTRY_TRAMPOLINE_PREFIX}{index}")
}

/// Name of the inner trampoline for signature number `index`, when its
/// convention needs one ([`clif`]).
fn inner_name(index: usize) -> String {
    format!("%__cranelift_exn_inner_{index}")
}

/// CLIF text of the entry trampoline for `sig` (and of its inner
/// trampoline, a plain `system_v` caller, for a callee that is neither
/// `system_v` nor `tail`: Cranelift cannot `try_call` `fast`, and
/// a `winch` callee has no exception payload registers); `index` makes the
/// names unique.
pub fn clif(sig: &ir::Signature, index: usize) -> String {
    let entry = name(index);
    let ptr = types::I64;
    // The two conventions whose `try_call` has the payload registers the
    // handler names (a `winch` callee has none on x86_64).
    let direct = matches!(sig.call_conv, CallConv::SystemV | CallConv::Tail);
    let mut loads = String::new();
    let mut args = Vec::new();
    for (i, p) in sig.params.iter().enumerate() {
        let v = 10 + i;
        let off = VALUES_OFFSET + SLOT_SIZE * i as i32;
        loads.push_str(&format!(
            "    v{v} = load.{} notrap aligned v1+{off}\n",
            p.value_type
        ));
        args.push(format!("v{v}"));
    }
    let first_result = 10 + sig.params.len();
    let results: Vec<String> = (0..sig.returns.len())
        .map(|i| format!("v{}", first_result + i))
        .collect();
    let mut stores = String::new();
    for (i, r) in results.iter().enumerate() {
        let off = VALUES_OFFSET + SLOT_SIZE * i as i32;
        stores.push_str(&format!("    store notrap aligned {r}, v1+{off}\n"));
    }
    // What the entry trampoline calls: the callee itself, or the inner
    // trampoline, which loads the arguments, calls it and stores the
    // results.
    let (inner, callee_sig, call, landing) = if direct {
        let params: Vec<String> = results
            .iter()
            .zip(&sig.returns)
            .map(|(r, p)| format!("{r}: {}", p.value_type))
            .collect();
        let rets: Vec<String> = (0..results.len()).map(|i| format!("ret{i}")).collect();
        (
            String::new(),
            format!("{sig}"),
            format!(
                "{loads}    jump block1
block1:
    try_call_indirect v0({}), sig0, block2({}), [ default: block3(exn0, exn1) ]
",
                args.join(", "),
                rets.join(", ")
            ),
            format!("block2({}):\n{stores}", params.join(", ")),
        )
    } else {
        let inner = inner_name(index);
        let results = if results.is_empty() {
            String::new()
        } else {
            format!("{} = ", results.join(", "))
        };
        (
            format!(
                "function {inner}({ptr}, {ptr}) system_v {{
    sig0 = {sig}
block0(v0: {ptr}, v1: {ptr}):
{loads}    {results}call_indirect sig0, v0({})
{stores}    return
}}

",
                args.join(", ")
            ),
            format!("({ptr}, {ptr}) system_v\n    fn0 = colocated {inner} sig0"),
            "    jump block1
block1:
    try_call fn0(v0, v1), sig0, block2(), [ default: block3(exn0, exn1) ]
"
            .to_string(),
            "block2:\n".to_string(),
        )
    };
    format!(
        "{inner}function {entry}({ptr}, {ptr}) system_v {{
    sig0 = {callee_sig}
block0(v0: {ptr}, v1: {ptr}):
    v2 = get_exception_handler_address.{ptr} block1, 0
    v3 = get_stack_pointer.{ptr}
    v4 = get_frame_pointer.{ptr}
    store notrap aligned v2, v1+{HANDLER_PC_OFFSET}
    store notrap aligned v3, v1+{HANDLER_SP_OFFSET}
    store notrap aligned v4, v1+{HANDLER_FP_OFFSET}
    v5 = iconst.{ptr} {STATUS_EXCEPTION}
    store notrap aligned v5, v1+{STATUS_OFFSET}
{call}{landing}    v6 = iconst.{ptr} {STATUS_RETURNED}
    store notrap aligned v6, v1+{STATUS_OFFSET}
    return
block3(v7: {ptr}, v8: {ptr}):
    return
}}
"
    )
}

#[cfg(test)]
mod tests {
    use cranelift_codegen::ir::AbiParam;

    use super::*;
    use crate::compile::{compile_function, default_isa};
    use crate::isa::Arch;

    /// Every convention a callee may have gets trampolines that compile on
    /// every ISA: `system_v` and `tail` callees one function, the others an
    /// inner trampoline too.
    #[test]
    fn trampolines_compile_for_every_callee_convention() {
        for arch in Arch::ALL {
            let isa = default_isa(arch).unwrap();
            let mut conventions = vec![
                CallConv::SystemV,
                CallConv::Tail,
                CallConv::Fast,
                CallConv::PreserveAll,
            ];
            if arch == Arch::X86_64 {
                conventions.push(CallConv::Winch);
            }
            for call_conv in conventions {
                let mut sig = ir::Signature::new(call_conv);
                sig.params.push(AbiParam::new(types::I64));
                sig.params.push(AbiParam::new(types::F64));
                // (`preserve_all` functions return nothing.)
                if call_conv != CallConv::PreserveAll {
                    sig.returns.push(AbiParam::new(types::I32));
                }
                let text = clif(&sig, 3);
                let funcs = cranelift_reader::parse_functions(&text).unwrap();
                let direct = matches!(call_conv, CallConv::SystemV | CallConv::Tail);
                assert_eq!(
                    funcs.len(),
                    if direct { 1 } else { 2 },
                    "{arch} {call_conv}"
                );
                for func in funcs {
                    let compiled = compile_function(&*isa, func);
                    assert!(compiled.is_ok(), "{arch} {call_conv}: {compiled:?}");
                }
            }
        }
    }
}
