//! Code for the tests of interrupting a call: functions that never return
//! by themselves, and one to call afterwards.

/// `%spin` calls the host function `%started()` (so that the test knows the
/// call runs), then loops without calls until it is interrupted; `%answer`
/// returns 42, to show the module is still usable.
pub const SPIN: &str = "
function %spin() -> i64 system_v {
    fn0 = %started() system_v
block0:
    call fn0()
    jump block1
block1:
    jump block1
}

function %answer() -> i64 system_v {
block0:
    v0 = iconst.i64 42
    return v0
}
";

/// `%count_up(x)` counts up from `x` forever, without calls: a runaway
/// loop that only an instruction limit, a timeout or an interrupt stops.
pub const COUNT_UP: &str = "
function %count_up(i64) -> i64 system_v {
block0(v0: i64):
    jump block1(v0)
block1(v1: i64):
    v2 = iconst.i64 1
    v3 = iadd v1, v2
    jump block1(v3)
}
";
