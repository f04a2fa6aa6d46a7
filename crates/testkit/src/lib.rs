//! Test fixtures shared by the test suites of cranelift-exn's crates, so
//! that every machine (native, unicorn, QEMU) is tested with one copy of
//! each program and check:
//!
//! - [`outcome`]: what a call returned or trapped with, or a panic;
//! - [`traps`]: functions that trap in every way the runtime reports;
//! - [`hosted`]: a module whose JIT code and host functions call, throw to
//!   and re-enter each other, with the checks its tests share;
//! - [`backtrace`]: traps deep in a call chain or a recursion, and the
//!   checks of their backtraces;
//! - [`data`]: the data objects the `JitModule` suites define;
//! - [`interrupts`]: a call that runs until it is interrupted;
//! - [`readme`]: checks that the README shows the code a test runs;
//! - [`rerun`]: this test binary again, in a child process.

pub mod backtrace;
pub mod data;
pub mod hosted;
pub mod interrupts;
pub mod outcome;
pub mod readme;
pub mod rerun;
pub mod traps;
