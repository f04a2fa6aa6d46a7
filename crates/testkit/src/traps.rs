//! Functions that trap in every way the runtime reports besides user traps
//! (which each suite writes with its own codes): division by zero, integer
//! overflow, an out-of-bounds load and a stack overflow.

/// `%divide` and `%signed_divide` (`i64` division, by zero or
/// `i64::MIN / -1`), `%load` (an `i32` load from the address given,
/// `heap_oob`) and `%recurse` (unbounded recursion).
pub const TRAPPING: &str = "
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

function %recurse(i64) -> i64 {
    fn0 = %recurse(i64) -> i64
block0(v0: i64):
    v901 = iconst.i64 1
    v1 = iadd v0, v901
    v2 = call fn0(v1)
    v3 = iadd v2, v0
    return v3
}
";
