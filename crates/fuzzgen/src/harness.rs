//! Running programs on machines and comparing them with the oracle.

use std::fmt;

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::TrapCode;
use cranelift_exn::codegen::isa::TargetIsa;
use cranelift_exn::machine::Machine;
use cranelift_exn::{CallError, Module};

use crate::program::Program;
use crate::{clif, oracle};

/// How a call of `%main` ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It returned this value.
    Value(i64),
    /// An exception escaped `%main`.
    Exception {
        /// Its tag.
        tag: u32,
        /// Its payloads.
        payloads: [u64; 2],
    },
    /// A `user{code}` trap in this function.
    Trap {
        /// The user trap code.
        code: u8,
        /// `%fK`.
        function: String,
    },
    /// Anything else: a compile or link error, another trap, a machine
    /// failure.
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Value(v) => write!(f, "returns {v}"),
            Outcome::Exception { tag, payloads } => write!(
                f,
                "uncaught exception tag{tag} (payloads {:#x}, {:#x})",
                payloads[0], payloads[1]
            ),
            Outcome::Trap { code, function } => write!(f, "trap user{code} in {function}"),
            Outcome::Failed(message) => write!(f, "failed: {message}"),
        }
    }
}

/// Compile `program` for `isa`, load it on `machine` and call `%main`.
pub fn execute(program: &Program, isa: &dyn TargetIsa, machine: Box<dyn Machine>) -> Outcome {
    let text = clif::print(program);
    let functions = match cranelift_exn::reader::parse_functions(&text) {
        Ok(f) => f,
        Err(e) => return Outcome::Failed(format!("generated CLIF does not parse: {e}")),
    };
    let module = match Module::new(machine, isa, functions) {
        Ok(m) => m,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    match module.call("main", &[DataValue::I64(program.argument)]) {
        Ok(values) => match values[..] {
            [DataValue::I64(v)] => Outcome::Value(v),
            _ => Outcome::Failed(format!("%main returned {values:?}")),
        },
        Err(CallError::Exception { tag, payloads }) => Outcome::Exception { tag, payloads },
        Err(CallError::Trap { code, function, .. }) => match user_code(code) {
            Some(code) => Outcome::Trap { code, function },
            None => Outcome::Failed(format!("trap {code} in {function}")),
        },
        Err(e @ (CallError::Interrupted | CallError::Failed(_))) => Outcome::Failed(e.to_string()),
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
    pub expected: Outcome,
    /// The machine's outcome.
    pub actual: Outcome,
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
