//! Entry trampolines: the only way host code calls JIT code.
//!
//! For a signature `S`, two functions are generated in CLIF:
//!
//! * an *inner* trampoline, `tail` convention, `(callee, buffer)`: loads the
//!   arguments from the buffer's slots, calls `callee` with `S`, stores the
//!   results back;
//! * an *entry* trampoline, C convention, `(callee, buffer)`: records the
//!   address of its own catch-all handler (`get_exception_handler_address`),
//!   its stack pointer and frame-pointer value in the buffer header, then
//!   `try_call`s the inner trampoline with a `default` handler. An exception
//!   nobody else catches lands there and sets the buffer's status word.
//!
//! Because the inner trampoline uses `tail`, the entry trampoline's
//! `try_call` treats every register as clobbered on the exceptional edge, so
//! the entry trampoline restores the host's callee-saved registers itself.
//! A callee that uses `tail` itself needs no inner trampoline: the entry
//! trampoline loads its arguments, `try_call`s it and stores its results.

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

/// Names of the two trampolines for signature number `index`.
pub fn names(index: usize) -> (String, String) {
    (
        format!("{ENTRY_TRAMPOLINE_PREFIX}{index}"),
        format!("%__cranelift_exn_inner_{index}"),
    )
}

/// CLIF text of the trampolines for `sig`; `index` makes their names
/// unique. A `tail` callee is `try_call`ed by the entry trampoline itself
/// (its exceptional edge already clobbers every register); any other gets
/// the inner `tail` trampoline in between.
pub fn clif(sig: &ir::Signature, index: usize) -> String {
    let (entry, inner) = names(index);
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
    let ptr = types::I64;
    let record = format!(
        "    v2 = get_exception_handler_address.{ptr} block1, 0
    v3 = get_stack_pointer.{ptr}
    v4 = get_frame_pointer.{ptr}
    store notrap aligned v2, v1+{HANDLER_PC_OFFSET}
    store notrap aligned v3, v1+{HANDLER_SP_OFFSET}
    store notrap aligned v4, v1+{HANDLER_FP_OFFSET}
"
    );
    let outcomes = format!(
        "    v5 = iconst.{ptr} {STATUS_RETURNED}
    store notrap aligned v5, v1+{STATUS_OFFSET}
    return
block3(v6: {ptr}, v7: {ptr}):
    v8 = iconst.{ptr} {STATUS_EXCEPTION}
    store notrap aligned v8, v1+{STATUS_OFFSET}
    return
}}
"
    );
    if sig.call_conv == CallConv::Tail {
        let params: Vec<String> = results
            .iter()
            .zip(&sig.returns)
            .map(|(r, p)| format!("{r}: {}", p.value_type))
            .collect();
        let rets: Vec<String> = (0..results.len()).map(|i| format!("ret{i}")).collect();
        return format!(
            "function {entry}({ptr}, {ptr}) system_v {{
    sig0 = {sig}
block0(v0: {ptr}, v1: {ptr}):
{record}{loads}    jump block1
block1:
    try_call_indirect v0({args}), sig0, block2({rets}), [ default: block3(exn0, exn1) ]
block2({params}):
{stores}{outcomes}",
            args = args.join(", "),
            rets = rets.join(", "),
            params = params.join(", "),
        );
    }
    let call = if results.is_empty() {
        format!("    call_indirect sig0, v0({})\n", args.join(", "))
    } else {
        format!(
            "    {} = call_indirect sig0, v0({})\n",
            results.join(", "),
            args.join(", ")
        )
    };
    format!(
        "function {inner}({ptr}, {ptr}) tail {{
    sig0 = {sig}
block0(v0: {ptr}, v1: {ptr}):
{loads}{call}{stores}    return
}}

function {entry}({ptr}, {ptr}) system_v {{
    sig0 = ({ptr}, {ptr}) tail
    fn0 = colocated {inner}(i64, i64) tail
block0(v0: {ptr}, v1: {ptr}):
{record}    jump block1
block1:
    try_call fn0(v0, v1), sig0, block2(), [ default: block3(exn0, exn1) ]
block2:
{outcomes}"
    )
}
