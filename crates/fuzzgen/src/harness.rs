//! Running programs on machines and comparing them with the oracle.

use std::fmt;

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::TrapCode;
use cranelift_exn::codegen::isa::TargetIsa;
use cranelift_exn::machine::Machine;
use cranelift_exn::{CallError, Module};

use crate::program::{Ending, Program};
use crate::{clif, oracle};

/// Compile `program` for `isa`, load it on `machine` and call `%main`.
pub fn execute(program: &Program, isa: &dyn TargetIsa, machine: Box<dyn Machine>) -> Ending {
    let text = clif::print(program);
    let functions = match cranelift_exn::reader::parse_functions(&text) {
        Ok(f) => f,
        Err(e) => return Ending::Failed(format!("generated CLIF does not parse: {e}")),
    };
    let module = match Module::new(machine, isa, functions) {
        Ok(m) => m,
        Err(e) => return Ending::Failed(e.to_string()),
    };
    match module.call("main", &[DataValue::I64(program.argument)]) {
        Ok(values) => match values[..] {
            [DataValue::I64(v)] => Ending::Value(v),
            _ => Ending::Failed(format!("%main returned {values:?}")),
        },
        Err(CallError::Exception { tag, payloads }) => Ending::Exception { tag, payloads },
        Err(CallError::Trap { code, function, .. }) => match user_code(code) {
            Some(code) => Ending::Trap { code, function },
            None => Ending::Failed(format!("trap {code} in {function}")),
        },
        Err(e @ (CallError::Interrupted | CallError::Failed(_))) => Ending::Failed(e.to_string()),
    }
}

fn user_code(code: TrapCode) -> Option<u8> {
    (1..=clif::UNREACHABLE_TRAP).find(|&n| TrapCode::user(n) == Some(code))
}

/// A program whose run on a machine disagreed with the oracle.
#[derive(Clone, Debug)]
pub struct Mismatch {
    /// The seed it came from, when it came from a seed.
    pub seed: Option<u64>,
    /// The machine (`x86_64 native`, `riscv64 emulated`, ...).
    pub machine: String,
    /// The oracle's outcome.
    pub expected: Ending,
    /// The machine's outcome.
    pub actual: Ending,
    /// The program.
    pub program: Program,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(seed) = self.seed {
            write!(f, "seed {seed}: ")?;
        }
        write!(
            f,
            "[{}] expected {}, got {}",
            self.machine, self.expected, self.actual
        )
    }
}

/// Run `program` on `machine` and compare it with the oracle.
pub fn check(
    program: &Program,
    label: &str,
    isa: &dyn TargetIsa,
    machine: Box<dyn Machine>,
) -> Result<(), Box<Mismatch>> {
    let expected = oracle::expected(program);
    let actual = execute(program, isa, machine);
    if actual == expected {
        Ok(())
    } else {
        Err(Box::new(Mismatch {
            seed: None,
            machine: label.to_string(),
            expected,
            actual,
            program: program.clone(),
        }))
    }
}
