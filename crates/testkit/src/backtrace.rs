//! Traps with backtraces: a chain of calls that traps at its bottom, an
//! unbounded recursion, and the checks of the backtraces they give.

use std::fmt::Display;

use cranelift_exn::codegen::ir::TrapCode;
use cranelift_exn::compile::compile_function;
use cranelift_exn::machine::Machine;
use cranelift_exn::module::MAX_BACKTRACE;
use cranelift_exn::{CallError, JitModule};

use crate::codegen::call_then;

/// `%outer(x)` calls `%middle`, which calls `%inner`: `x + 3`, or user
/// trap 9 in `%inner` when `x` is 0.
pub fn chain() -> String {
    let middle = call_then("%middle(i64) -> i64", "%inner(i64) -> i64", "iadd", 1);
    let outer = call_then("%outer(i64) -> i64", "%middle(i64) -> i64", "iadd", 2);
    format!("{INNER}\n{middle}\n{outer}")
}

/// `%inner(x)`: `x`, or user trap 9 when `x` is 0.
const INNER: &str = "
function %inner(i64) -> i64 {
block0(v0: i64):
    v1 = iconst.i64 0
    v2 = icmp eq v0, v1
    trapnz v2, user9
    return v0
}
";

/// `%recurse(x)` calls itself until the stack overflows.
pub const RECURSE: &str = recurse_clif!();

/// `err`, from `%outer(0)` of [`chain`] in `module`, is user trap 9 in
/// `%inner` with the backtrace `%inner`, `%middle`, `%outer`: the first
/// frame at the trapping instruction, the others at return addresses of
/// call sites.
pub fn assert_chain_trap<M: ?Sized + Machine>(
    module: &JitModule<M>,
    err: &CallError,
    label: &dyn Display,
) {
    let CallError::Trap {
        code,
        pc,
        function,
        backtrace,
        ..
    } = err
    else {
        panic!("{label}: {err:?}");
    };
    assert_eq!(
        (*code, function.as_str()),
        (TrapCode::user(9).unwrap(), "%inner"),
        "{label}"
    );
    let names: Vec<&str> = backtrace.iter().map(|f| f.function.as_str()).collect();
    assert_eq!(names, ["%inner", "%middle", "%outer"], "{label}: {err:?}");
    let start = |name: &str| module.symbol_address(name).unwrap();
    assert_eq!(backtrace[0].offset, pc - start("inner"), "{label}");
    // The other offsets are return addresses of call sites: of the plain
    // calls Cranelift records compiling CHAIN for the module's target,
    // which the exception table (call sites with handlers only) leaves out.
    let compiled: Vec<_> = cranelift_exn::reader::parse_functions(&chain())
        .unwrap()
        .into_iter()
        .map(|f| compile_function(cranelift_exn::cranelift_module::Module::isa(module), f).unwrap())
        .collect();
    for frame in &backtrace[1..] {
        let f = compiled.iter().find(|f| f.name == frame.function).unwrap();
        assert!(
            f.call_sites
                .iter()
                .any(|s| u64::from(s.return_offset) == frame.offset && s.handlers.is_empty()),
            "{label}: {frame:?} {:?}",
            f.call_sites
        );
        let pc = start(&frame.function) + frame.offset;
        assert!(
            module.table().call_site_returning_to(pc).is_none(),
            "{label}"
        );
        assert_eq!(
            module.table().function(pc - 1).map(|f| f.name.as_str()),
            Some(frame.function.as_str()),
            "{label}"
        );
    }
}

/// `err`, from `%recurse` of [`RECURSE`], is a stack overflow whose
/// backtrace is capped at [`MAX_BACKTRACE`] frames, all of `%recurse`.
pub fn assert_capped_recursion(err: &CallError, label: &dyn Display) {
    let CallError::Trap {
        code, backtrace, ..
    } = err
    else {
        panic!("{label}: {err:?}");
    };
    assert_eq!(*code, TrapCode::STACK_OVERFLOW, "{label}");
    assert_eq!(backtrace.len(), MAX_BACKTRACE, "{label}: {err:?}");
    assert!(
        backtrace.iter().all(|f| f.function == "%recurse"),
        "{label}"
    );
}
