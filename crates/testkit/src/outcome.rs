//! What a call returned or trapped with, or a panic naming what was
//! expected instead.

use cranelift_exn::CallError;
use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::TrapCode;

/// The single `i64` a call returned; panics on anything else.
pub fn one(result: Result<Vec<DataValue>, CallError>) -> i64 {
    match result.as_deref() {
        Ok([DataValue::I64(v)]) => *v,
        other => panic!("expected one i64, got {other:?}"),
    }
}

/// The code of the trap a call ended in; panics when it did not trap, or
/// trapped in another function than `function` (`%name`).
pub fn trap_code(result: Result<Vec<DataValue>, CallError>, function: &str) -> TrapCode {
    match result {
        Err(CallError::Trap {
            code, function: f, ..
        }) => {
            assert_eq!(f, function, "trap reported in the wrong function");
            code
        }
        other => panic!("expected a trap in {function}, got {other:?}"),
    }
}
