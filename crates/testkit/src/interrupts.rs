//! Code for the tests of interrupting a call: a function that never
//! returns by itself, and one to call afterwards.

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
