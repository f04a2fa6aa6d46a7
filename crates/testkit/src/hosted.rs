//! A module whose JIT code and host functions call, throw to and re-enter
//! each other ([`hosted`] with the host functions of [`hosted_builder`]),
//! and the checks the suites of every machine run on it.

use std::fmt::Display;

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::{AbiParam, Signature, TrapCode, types};
use cranelift_exn::codegen::isa::{CallConv, OwnedTargetIsa};
use cranelift_exn::host::HostThrow;
use cranelift_exn::{CallError, Module, ModuleBuilder};

use crate::codegen::call_then;
use crate::outcome::one;

/// The JIT half of the module: `%add_host` calls `%host_add`;
/// `%catch_host` catches tag 5 thrown by `%host_throw` two frames down;
/// `%outer` re-enters the module through `%host_reenter`; `%to_entry`
/// throws to the entry past a handler; `%ceil` rounds (a libcall on some
/// targets).
pub fn hosted() -> String {
    let catch_host = catch_two_frames_up(["catch_host", "middle", "host_throw"], 5, "iadd", 1000);
    // Calls back into the host, which re-enters the module.
    let outer = call_then(
        "%outer(i64) -> i64",
        "%host_reenter(i64) -> i64 system_v",
        "imul",
        10,
    );
    format!(
        "{HOSTED_FIRST}\n;; Catches tag 5 from the host; anything else passes through.\n{catch_host}{outer}{HOSTED_REST}"
    )
}

/// [`hosted`] before `%catch_host`.
const HOSTED_FIRST: &str = "
function %add_host(i64, i64) -> i64 {
    fn0 = %host_add(i64, i64) -> i64 system_v
block0(v0: i64, v1: i64):
    v2 = call fn0(v0, v1)
    v902 = iconst.i64 1
    v3 = iadd v2, v902
    return v3
}

";

/// [`hosted`] after `%middle`.
const HOSTED_REST: &str = "

function %inner(i64) -> i64 {
    fn0 = %host_throw(i64) -> i64 tail
block0(v0: i64):
    v1 = call fn0(v0)
    return v1
}

function %inner_trap(i64) -> i64 {
block0(v0: i64):
    trap user3
}

;; Throws tag 7 to the entry from below handlers that would catch it.
function %to_entry(i64) -> i64 {
    sig0 = (i64) -> i64 tail
    fn0 = %to_entry_inner(i64) -> i64 tail
block0(v0: i64):
    try_call fn0(v0), sig0, block1(ret0), [ tag7: block2(exn0), default: block2(exn0) ]
block1(v1: i64):
    return v1
block2(v2: i64):
    v3 = iconst.i64 -1
    return v3
}

function %to_entry_inner(i64) -> i64 tail {
    fn0 = %__cranelift_exn_throw_to_entry(i32, i64, i64) system_v
block0(v0: i64):
    v1 = iconst.i32 7
    v2 = iconst.i64 99
    call fn0(v1, v0, v2)
    return v0
}

function %ceil(f32, f64) -> f32, f64 {
block0(v0: f32, v1: f64):
    v2 = ceil v0
    v3 = floor v1
    return v2, v3
}
";

/// Throws from JIT code: `%catch_jit(x)` catches tag 3 that `%thrower`
/// throws two frames down when `x` is not 0 (payloads 100 and `x`), and
/// returns `100 - x` then; 8 when nothing is thrown.
pub fn jit_throws() -> String {
    let catch_jit = catch_two_frames_up(["catch_jit", "relay", "thrower"], 3, "isub", 7);
    format!(";; Throws from JIT code, caught two frames up.\n{catch_jit}{THROWER}")
}

/// `%thrower(x)`: throws tag 3 with payloads 100 and `x` when `x` is not
/// 0; else returns 1.
const THROWER: &str = "
function %thrower(i64) -> i64 tail {
    fn0 = %__cranelift_throw(i64, i64, i64, i32, i64, i64) system_v
block0(v0: i64):
    brif v0, block1, block2
block1:
    v4 = get_frame_pointer.i64
    v5 = get_return_address.i64
    v6 = iconst.i64 0
    v1 = iconst.i32 3
    v2 = iconst.i64 100
    call fn0(v6, v4, v5, v1, v2, v0)
    return v0
block2:
    v3 = iconst.i64 1
    return v3
}
";

/// `%catcher(x)` try-calls the tail function `%relay(x)`, which calls the
/// tail function `%callee(x)` and adds `relay_adds` to its result; a throw
/// of `tag` caught there returns `exn0 op exn1` (`op`: `iadd`, `isub`).
fn catch_two_frames_up(
    [catcher, relay, callee]: [&str; 3],
    tag: u32,
    op: &str,
    relay_adds: i64,
) -> String {
    let relay_function = call_then(
        &format!("%{relay}(i64) -> i64 tail"),
        &format!("%{callee}(i64) -> i64 tail"),
        "iadd",
        relay_adds,
    );
    format!(
        "function %{catcher}(i64) -> i64 {{
    sig0 = (i64) -> i64 tail
    fn0 = %{relay}(i64) -> i64 tail
block0(v0: i64):
    try_call fn0(v0), sig0, block1(ret0), [ tag{tag}: block2(exn0, exn1) ]
block1(v1: i64):
    return v1
block2(v2: i64, v3: i64):
    v4 = {op} v2, v3
    return v4
}}

{relay_function}"
    )
}

/// A signature of `params` `i64` parameters returning one `i64`.
pub fn i64_sig(params: usize, call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params = vec![AbiParam::new(types::I64); params];
    sig.returns = vec![AbiParam::new(types::I64)];
    sig
}

/// The one `i64` argument a host function was called with.
fn the_i64(args: &[DataValue]) -> i64 {
    let [DataValue::I64(x)] = args else {
        panic!("bad arguments {args:?}")
    };
    *x
}

/// [`hosted`] and its host functions, compiled for `isa`, for the caller to
/// finalize on its machine (after adding more, such as [`jit_throws`]).
pub fn hosted_builder(isa: OwnedTargetIsa) -> ModuleBuilder {
    let mut builder = ModuleBuilder::new(isa);
    builder.define_clif(&hosted()).unwrap();
    builder
        .define_host_function(
            "host_add",
            i64_sig(2, CallConv::SystemV),
            |_, args| match args {
                [DataValue::I64(a), DataValue::I64(b)] => Ok(vec![DataValue::I64(a * 100 + b)]),
                _ => panic!("bad arguments {args:?}"),
            },
        )
        .unwrap();
    // x: 0 returns 7; 1 throws tag 5 (caught by %catch_host); 2 throws
    // tag 6 (uncaught); 3 throws to the entry; 4 panics.
    builder
        .define_host_function(
            "host_throw",
            i64_sig(1, CallConv::Tail),
            |_, args| match the_i64(args) {
                0 => Ok(vec![DataValue::I64(7)]),
                1 => Err(HostThrow::Exception {
                    tag: 5,
                    payloads: [40, 2],
                }),
                2 => Err(HostThrow::Exception {
                    tag: 6,
                    payloads: [0x66, 0x77],
                }),
                3 => Err(HostThrow::ToEntry {
                    tag: 5,
                    payloads: [1, 2],
                }),
                _ => panic!("host function asked to panic"),
            },
        )
        .unwrap();
    // Re-enters the module: x < 10 calls %inner(x), else %inner_trap; the
    // inner outcome becomes a number.
    builder
        .define_host_function("host_reenter", i64_sig(1, CallConv::SystemV), |m, args| {
            let x = the_i64(args);
            let callee = match x {
                ..10 => "inner",
                10..20 => "inner_trap",
                _ => "to_entry",
            };
            let inner = m.call(callee, &[DataValue::I64(x)]);
            let value = match inner {
                Ok(v) => match v[..] {
                    [DataValue::I64(v)] => v,
                    _ => -1,
                },
                Err(CallError::Exception { tag, payloads }) => {
                    i64::from(tag) * 1000 + payloads[0] as i64
                }
                Err(CallError::Trap { code, .. }) if code == TrapCode::user(3).unwrap() => 333,
                Err(other) => panic!("unexpected inner outcome {other:?}"),
            };
            Ok(vec![DataValue::I64(value)])
        })
        .unwrap();
    builder
}

/// `%add_host` and `%catch_host(0)` return what the host function made of
/// their arguments.
pub fn assert_host_function_returns(module: &Module, label: &dyn Display) {
    assert_eq!(
        one(module.call("add_host", &[DataValue::I64(3), DataValue::I64(4)])),
        305,
        "{label}"
    );
    assert_eq!(one(call(module, "catch_host", 0)), 1007, "{label}");
}

/// Exceptions thrown by a host function: caught by a JIT handler,
/// uncaught, and thrown straight to the entry past a handler.
pub fn assert_host_throws(module: &Module, label: &dyn Display) {
    assert_eq!(
        one(call(module, "catch_host", 1)),
        42,
        "{label}: caught in JIT"
    );
    assert_eq!(
        call(module, "catch_host", 2).unwrap_err(),
        CallError::Exception {
            tag: 6,
            payloads: [0x66, 0x77]
        },
        "{label}: uncaught"
    );
    // Straight to the entry, past the tag-5 handler that would catch it.
    assert_eq!(
        call(module, "catch_host", 3).unwrap_err(),
        CallError::Exception {
            tag: 5,
            payloads: [1, 2]
        },
        "{label}: to entry"
    );
}

/// A panicking host function fails the call, and the module stays usable.
pub fn assert_host_panic_fails_the_call(module: &Module, label: &dyn Display) {
    match call(module, "catch_host", 4) {
        Err(CallError::Failed(e)) => {
            assert!(e.to_string().contains("asked to panic"), "{label}: {e}")
        }
        other => panic!("{label}: a panicking host function gave {other:?}"),
    }
    assert_eq!(
        one(call(module, "catch_host", 1)),
        42,
        "{label}: usable afterwards"
    );
}

/// Entries nest through `%host_reenter`, each level seeing its own
/// outcome: a value, an uncaught exception, a throw to the entry, a trap.
pub fn assert_nested_entries(module: &Module, label: &dyn Display) {
    let call = |x: i64| one(call(module, "outer", x));
    // Inner returns 7 → 70.
    assert_eq!(call(0), 70, "{label}");
    // Inner's uncaught tag-6 exception stops at the inner entry.
    assert_eq!(call(2), (6 * 1000 + 0x66) * 10, "{label}");
    // Inner's throw-to-entry reaches the inner entry, not the outer.
    assert_eq!(call(3), (5 * 1000 + 1) * 10, "{label}");
    // An inner trap is the inner call's outcome.
    assert_eq!(call(10), 3330, "{label}");
    assert_eq!(call(1), (5 * 1000 + 40) * 10, "{label}");
}

/// JIT code's `%__cranelift_exn_throw_to_entry` (`%to_entry`) skips the
/// handlers in between: the call's outcome is the exception, also from a
/// nested entry, whose outer call goes on; the module stays usable.
pub fn assert_jit_throws_to_entry(module: &Module, label: &dyn Display) {
    for x in [0, 5, -3] {
        assert_eq!(
            call(module, "to_entry", x).unwrap_err(),
            CallError::Exception {
                tag: 7,
                payloads: [x as u64, 99]
            },
            "{label}: the tag-7 handler in between is skipped"
        );
    }
    // `%outer(21)` re-enters with `%to_entry(21)`, which throws to the
    // inner entry.
    assert_eq!(
        one(call(module, "outer", 21)),
        (7 * 1000 + 21) * 10,
        "{label}"
    );
    assert_eq!(
        one(call(module, "catch_host", 1)),
        42,
        "{label}: usable afterwards"
    );
}

/// Call the function `name` of `module` with one `i64`.
fn call(module: &Module, name: &str, x: i64) -> Result<Vec<DataValue>, CallError> {
    module.call(name, &[DataValue::I64(x)])
}
