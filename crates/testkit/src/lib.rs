//! Test fixtures shared by the test suites of cranelift-exn's crates, so
//! that every machine (native, unicorn, QEMU) is tested with one copy of
//! each program and check:
//!
//! - [`outcome`]: what a call returned or trapped with, or a panic;
//! - [`traps`]: functions that trap in every way the runtime reports;
//! - [`hosted`]: a module whose JIT code and host functions call, throw to
//!   and re-enter each other, with the checks its tests share;
//! - [`codegen`]: small CLIF functions compiled with ISA flags, and their
//!   code;
//! - [`zcb`]: the riscv64 Zcb instructions both emulated machines carry
//!   out;
//! - [`backtrace`]: traps deep in a call chain or a recursion, and the
//!   checks of their backtraces;
//! - [`data`]: the data objects the `JitModule` suites define;
//! - [`interrupts`]: a call that runs until it is interrupted;
//! - [`readme`]: checks that the README shows the code a test runs;
//! - [`rerun`]: this test binary again, in a child process.

/// `%recurse(x)`, which calls itself until the stack overflows: the one
/// text of [`backtrace::RECURSE`] and of [`traps::TRAPPING`]'s `%recurse`.
macro_rules! recurse_clif {
    () => {
        "
function %recurse(i64) -> i64 {
    fn0 = %recurse(i64) -> i64
block0(v0: i64):
    v1 = iconst.i64 1
    v2 = iadd v0, v1
    v3 = call fn0(v2)
    v4 = iadd v3, v1
    return v4
}
"
    };
}

pub mod backtrace;
pub mod codegen;
pub mod data;
pub mod hosted;
pub mod interrupts;
pub mod outcome;
pub mod readme;
pub mod rerun;
pub mod traps;
pub mod zcb;
