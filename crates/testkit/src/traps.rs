//! Functions that trap in every way the runtime reports besides user traps
//! (which each suite writes with its own codes): division by zero, integer
//! overflow, an out-of-bounds load and a stack overflow, the last also with
//! frames of any size; and a call to an address without code, with the
//! check of its trap.

use std::fmt::Display;

use cranelift_exn::CallError;
use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::module::BAD_CODE_ADDRESS;

/// `%divide` and `%signed_divide` (`i64` division, by zero or
/// `i64::MIN / -1`), `%load` (an `i32` load from the address given,
/// `heap_oob`) and `%recurse` (unbounded recursion).
pub const TRAPPING: &str = concat!(
    "
function %divide(i64, i64) -> i64 {
block0(v0: i64, v1: i64):
    v2 = udiv v0, v1
    return v2
}

function %signed_divide(i64, i64) -> i64 {
block0(v0: i64, v1: i64):
    v2 = sdiv v0, v1
    return v2
}

function %load(i64) -> i32 {
block0(v0: i64):
    v1 = load.i32 heap_oob v0
    return v1
}
",
    recurse_clif!()
);

/// `%deep` recurses forever with a `slot`-byte frame, writing the lowest
/// word of its slot before each call: a stack overflow whatever the size
/// of the frames (the stack-probe tests' program).
pub fn deep_recursion(slot: u32) -> String {
    format!(
        "
function %deep(i64) -> i64 system_v {{
    ss0 = explicit_slot {slot}
    fn0 = %deep(i64) -> i64 system_v
block0(v0: i64):
    v1 = stack_addr.i64 ss0
    store notrap aligned v0, v1
    v2 = iconst.i64 1
    v3 = iadd v0, v2
    v4 = call fn0(v3)
    v5 = load.i64 v1
    v6 = iadd v4, v5
    return v6
}}
"
    )
}

/// `%scribble` stores zero over its own first instruction: a fault wherever
/// code is not writable, as it must never be.
pub const SCRIBBLE: &str = "
function %scribble() -> i64 system_v {
    fn0 = %scribble() -> i64 system_v
block0:
    v0 = func_addr.i64 fn0
    v1 = iconst.i64 0
    store v1, v0
    return v1
}
";

/// `%call_ptr(p)` calls the function at address `p` (no arguments, an
/// `i64` result) and adds 1.
pub const CALL_POINTER: &str = "
function %call_ptr(i64) -> i64 {
    sig0 = () -> i64
block0(v0: i64):
    v1 = call_indirect sig0, v0()
    v2 = iconst.i64 1
    v3 = iadd v1, v2
    return v3
}
";

/// `outcome`, of `%call_ptr(target)` of [`CALL_POINTER`] where `target`
/// holds no code, is a [`BAD_CODE_ADDRESS`] trap at `target`, in no
/// function and of no data address, whose backtrace is `%call_ptr` alone
/// (at its call).
pub fn assert_bad_code_address(
    outcome: Result<Vec<DataValue>, CallError>,
    target: u64,
    label: &dyn Display,
) {
    let Err(CallError::Trap {
        code,
        pc,
        function,
        address,
        backtrace,
    }) = &outcome
    else {
        panic!("{label}: calling {target:#x}: expected a trap, got {outcome:?}");
    };
    assert_eq!(*code, BAD_CODE_ADDRESS, "{label}: calling {target:#x}");
    assert_eq!(
        (*pc, function.as_str(), *address),
        (target, "", None),
        "{label}: calling {target:#x}"
    );
    let names: Vec<&str> = backtrace.iter().map(|f| f.function.as_str()).collect();
    assert_eq!(names, ["%call_ptr"], "{label}: calling {target:#x}");
}
