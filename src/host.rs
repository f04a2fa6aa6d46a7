//! Host functions that JIT code calls, and that may throw into JIT handlers.
//!
//! Each host function gets a *glue* function generated in CLIF with the
//! signature JIT code calls it by. The glue stores its arguments in a frame on
//! its own stack, calls the machine's [`HostFunction::Call`] dispatcher with
//! the host function's index and the frame's address, and then either loads
//! the results from the frame and returns, or — when the host function
//! threw — loads the tag and payloads and calls the throw stub itself (the
//! throw-to-entry stub, O(1), when the call is to end at its entry: a
//! [`HostThrow::ToEntry`], or a host function that failed or was
//! interrupted). The Rust host function has returned by then: no Rust frame
//! is ever skipped by an unwind.
//!
//! Glue frame layout (target byte order): tag at 0, payloads at 8 and 16,
//! values in 16-byte slots from [`VALUES_OFFSET`], like an entry buffer.
//!
//! [`HostFunction::Call`]: crate::machine::HostFunction::Call

use cranelift_codegen::data_value::DataValue;
use cranelift_codegen::ir::{self, LibCall, types};

use crate::abi::{SLOT_SIZE, THROW_SYMBOL, THROW_TO_ENTRY_SYMBOL, VALUES_OFFSET};

/// The symbol glue calls to reach the machine's host-call dispatcher.
pub const DISPATCH_SYMBOL: &str = "%__cranelift_exn_host_call";

/// Glue frame: offset of the thrown tag (a 32-bit value in a 64-bit word).
pub const TAG_OFFSET: u64 = 0;
/// Glue frame: offset of the first payload.
pub const PAYLOAD0_OFFSET: u64 = 8;
/// Glue frame: offset of the second payload.
pub const PAYLOAD1_OFFSET: u64 = 16;

/// What the dispatcher returns to the glue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum HostStatus {
    /// The host function returned; its results are in the frame.
    Returned = 0,
    /// The host function threw; tag and payloads are in the frame, and the
    /// glue calls the throw stub.
    Threw = 1,
    /// The call ends at its entry (the outcome is already recorded); the
    /// glue calls the throw-to-entry stub with the frame's tag and payloads.
    ToEntry = 2,
}

/// How a host function ends when it does not return values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostThrow {
    /// Throw an exception into JIT code: the nearest handler for `tag` up the
    /// stack of JIT frames catches it (a stack walk).
    Exception {
        /// The exception's tag.
        tag: u32,
        /// Its two payloads.
        payloads: [u64; 2],
    },
    /// Deliver the exception straight to the innermost entry trampoline,
    /// skipping every JIT handler in between, without walking the stack:
    /// the call returns [`crate::CallError::Exception`].
    ToEntry {
        /// The exception's tag.
        tag: u32,
        /// Its two payloads.
        payloads: [u64; 2],
    },
}

/// What a host function returns.
pub type HostResult = Result<Vec<DataValue>, HostThrow>;

/// Bytes of glue frame for `sig`.
pub fn frame_size(sig: &ir::Signature) -> u32 {
    let slots = sig.params.len().max(sig.returns.len()) as u32;
    VALUES_OFFSET as u32 + slots * SLOT_SIZE as u32
}

/// CLIF text of the glue for host function number `index`.
pub fn glue_clif(name: &str, sig: &ir::Signature, index: usize) -> String {
    let ptr = types::I64;
    let params: Vec<String> = (0..sig.params.len())
        .map(|i| format!("v{}", 100 + i))
        .collect();
    let typed_params: Vec<String> = params
        .iter()
        .zip(&sig.params)
        .map(|(v, p)| format!("{v}: {}", p.value_type))
        .collect();
    let mut stores = String::new();
    for (i, v) in params.iter().enumerate() {
        let off = VALUES_OFFSET + SLOT_SIZE * i as i32;
        stores.push_str(&format!("    store notrap aligned {v}, v1+{off}\n"));
    }
    let mut loads = String::new();
    let mut results = Vec::new();
    for (i, r) in sig.returns.iter().enumerate() {
        let off = VALUES_OFFSET + SLOT_SIZE * i as i32;
        let v = format!("v{}", 200 + i);
        loads.push_str(&format!(
            "    {v} = load.{} notrap aligned v1+{off}\n",
            r.value_type
        ));
        results.push(v);
    }
    let size = frame_size(sig);
    format!(
        "function {name}{sig_text} {{
    ss0 = explicit_slot {size}, align = 16
    sig0 = ({ptr}, {ptr}) -> {ptr} system_v
    fn0 = {DISPATCH_SYMBOL} sig0
    sig1 = ({ptr}, {ptr}, {ptr}, i32, {ptr}, {ptr}) system_v
    fn1 = {THROW_SYMBOL} sig1
    sig2 = (i32, {ptr}, {ptr}) system_v
    fn2 = {THROW_TO_ENTRY_SYMBOL} sig2
block0({params}):
    v1 = stack_addr.{ptr} ss0
{stores}    v2 = iconst.{ptr} {index}
    v3 = call fn0(v2, v1)
    brif v3, block2, block1
block1:
{loads}    return {results}
block2:
    v4 = load.i32 notrap aligned v1+{TAG_OFFSET}
    v5 = load.{ptr} notrap aligned v1+{PAYLOAD0_OFFSET}
    v6 = load.{ptr} notrap aligned v1+{PAYLOAD1_OFFSET}
    v11 = iconst.{ptr} {to_entry}
    v10 = icmp eq v3, v11
    brif v10, block4, block3
block3:
    v7 = get_frame_pointer.{ptr}
    v8 = get_return_address.{ptr}
    v9 = iconst.{ptr} 0
    call fn1(v9, v7, v8, v4, v5, v6)
    trap user1
block4:
    call fn2(v4, v5, v6)
    trap user1
}}
",
        to_entry = HostStatus::ToEntry as u64,
        sig_text = signature_text(sig),
        params = typed_params.join(", "),
        results = results.join(", "),
    )
}

/// `(params) -> returns callconv`, as a function header wants it.
fn signature_text(sig: &ir::Signature) -> String {
    // `Signature`'s Display prints exactly this shape.
    sig.to_string()
}

/// The Rust side of a libcall: `None` when the arguments do not fit it.
pub type LibcallFn = fn(&[DataValue]) -> Option<DataValue>;

/// Cranelift's libcalls that this crate provides as host functions (for
/// targets whose flags lack the instructions, e.g. x86_64 without SSE4.1).
pub fn libcall(call: LibCall) -> Option<LibcallFn> {
    use DataValue::{F32, F64};
    Some(match call {
        LibCall::CeilF32 => |a| f32_op(a, f32::ceil),
        LibCall::CeilF64 => |a| f64_op(a, f64::ceil),
        LibCall::FloorF32 => |a| f32_op(a, f32::floor),
        LibCall::FloorF64 => |a| f64_op(a, f64::floor),
        LibCall::TruncF32 => |a| f32_op(a, f32::trunc),
        LibCall::TruncF64 => |a| f64_op(a, f64::trunc),
        LibCall::NearestF32 => |a| f32_op(a, f32::round_ties_even),
        LibCall::NearestF64 => |a| f64_op(a, f64::round_ties_even),
        LibCall::FmaF32 => |a| match a {
            [F32(x), F32(y), F32(z)] => {
                Some(F32(x.as_f32().mul_add(y.as_f32(), z.as_f32()).into()))
            }
            _ => None,
        },
        LibCall::FmaF64 => |a| match a {
            [F64(x), F64(y), F64(z)] => {
                Some(F64(x.as_f64().mul_add(y.as_f64(), z.as_f64()).into()))
            }
            _ => None,
        },
        LibCall::X86Pshufb => |a| match a {
            [DataValue::V128(table), DataValue::V128(selector)] => {
                // Each selector byte picks a table byte, or zero when its top
                // bit is set (x86 `pshufb`).
                let mut out = [0u8; 16];
                for (o, &s) in out.iter_mut().zip(selector) {
                    if s & 0x80 == 0 {
                        *o = table[usize::from(s & 0x0f)];
                    }
                }
                Some(DataValue::V128(out))
            }
            _ => None,
        },
        _ => return None,
    })
}

fn f32_op(args: &[DataValue], op: fn(f32) -> f32) -> Option<DataValue> {
    match args {
        [DataValue::F32(x)] => Some(DataValue::F32(op(x.as_f32()).into())),
        _ => None,
    }
}

fn f64_op(args: &[DataValue], op: fn(f64) -> f64) -> Option<DataValue> {
    match args {
        [DataValue::F64(x)] => Some(DataValue::F64(op(x.as_f64()).into())),
        _ => None,
    }
}

/// The libcall a symbol names (`%CeilF32`), if any.
pub fn libcall_named(symbol: &str) -> Option<LibCall> {
    let name = symbol.strip_prefix('%')?;
    name.parse().ok()
}
