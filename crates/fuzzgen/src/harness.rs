//! Running programs on machines and comparing them with the oracle.

use std::fmt;

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::immediates::Ieee64;
use cranelift_exn::codegen::ir::{AbiParam, Signature, TrapCode, types};
use cranelift_exn::codegen::isa::{CallConv, TargetIsa};
use cranelift_exn::machine::Machine;
use cranelift_exn::{CallError, HostResult, HostThrow, Module};

use crate::program::{Ending, HostAction, NESTED_TRAP_TAG, Program};
use crate::{clif, oracle};

/// Compile `program` for `isa`, load it (with its host functions) on
/// `machine` and call `%main`.
pub fn execute(program: &Program, isa: &dyn TargetIsa, machine: Box<dyn Machine>) -> Ending {
    let text = clif::print(program);
    let functions = match cranelift_exn::reader::parse_functions(&text) {
        Ok(f) => f,
        Err(e) => return Ending::Failed(format!("generated CLIF does not parse: {e}")),
    };
    let module = match load(program, isa, machine, functions) {
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

/// The module of `functions` (the program's CLIF, parsed) and of the
/// program's host functions, loaded at once or a function per finalize as
/// [`Program::incremental`] says.
pub fn load(
    program: &Program,
    isa: &dyn TargetIsa,
    machine: Box<dyn Machine>,
    functions: Vec<cranelift_exn::codegen::ir::Function>,
) -> Result<Module, cranelift_exn::Error> {
    let mut module = Module::from_boxed_machine(machine, isa)?;
    let mut signature = Signature::new(CallConv::SystemV);
    signature.params.push(AbiParam::new(types::I64));
    signature.params.push(AbiParam::new(types::F64));
    signature.returns.push(AbiParam::new(types::I64));
    for (n, (action, in_clif)) in program.hosts().into_iter().enumerate() {
        if in_clif {
            continue;
        }
        module.define_host_function(&format!("h{n}"), signature.clone(), move |m, args| {
            host_function(m, action, args)
        })?;
    }
    if !program.incremental {
        for function in functions {
            module.define_ir_function(function)?;
        }
        module.finalize()?;
        return Ok(module);
    }
    // Every function declared first, so that one defined before its callees
    // waits for them; then each defined and finalized on its own, callees
    // first (the reverse of the printed order: stand-ins, %f{n-1} … %f0,
    // %main).
    for function in &functions {
        let name = function.name.to_string();
        let name = name.strip_prefix('%').unwrap_or(&name);
        cranelift_exn::cranelift_module::Module::declare_function(
            &mut module,
            name,
            cranelift_exn::cranelift_module::Linkage::Export,
            &function.signature,
        )
        .map_err(|e| cranelift_exn::Error::Compile {
            function: name.to_string(),
            message: e.to_string(),
        })?;
    }
    for function in functions.into_iter().rev() {
        module.define_ir_function(function)?;
        module.finalize()?;
    }
    match module.waiting().first() {
        None => Ok(module),
        Some((function, symbol)) => Err(cranelift_exn::Error::Compile {
            function: function.clone(),
            message: format!("still waits for {symbol} after the last finalize"),
        }),
    }
}

/// What the host function of `action` does with `args` (see
/// [`HostAction`]). Anything the oracle does not model (arguments or
/// results of other types, a nested call that fails) is a panic, which
/// the module turns into a failure of the whole call, naming it.
fn host_function(module: &Module, action: HostAction, args: &[DataValue]) -> HostResult {
    let [DataValue::I64(acc), DataValue::F64(float)] = *args else {
        panic!("arguments {args:?}, expected (i64, f64)");
    };
    let float = float.as_f64();
    let value = |constant: i64| {
        Ok(vec![DataValue::I64(
            acc.wrapping_mul(5)
                .wrapping_add((float * 2.0) as i64)
                .wrapping_add(constant),
        )])
    };
    match action {
        HostAction::Return { constant } => value(constant),
        HostAction::Throw { tag, when } if when.holds(acc) => Err(HostThrow::Exception {
            tag,
            payloads: [acc as u64, u64::from(tag + 16)],
        }),
        HostAction::ToEntry { tag, when } if when.holds(acc) => Err(HostThrow::ToEntry {
            tag,
            payloads: [acc as u64, u64::from(tag + 32)],
        }),
        HostAction::Throw { .. } | HostAction::ToEntry { .. } => value(0),
        HostAction::Reenter { callee } => {
            let name = format!("f{callee}");
            let args = [
                DataValue::I64(acc),
                DataValue::F64(Ieee64::with_float(float)),
            ];
            match module.call(&name, &args) {
                Ok(values) => match values[..] {
                    [DataValue::I64(r)] => Ok(vec![DataValue::I64(r.wrapping_add(1))]),
                    _ => panic!("%{name} returned {values:?}"),
                },
                Err(CallError::Exception { tag, payloads }) => {
                    Err(HostThrow::Exception { tag, payloads })
                }
                Err(CallError::Trap { code, function, .. }) => {
                    let index = function.strip_prefix("%f").and_then(|k| k.parse().ok());
                    match (user_code(code), index) {
                        (Some(code), Some(index)) => Err(HostThrow::ToEntry {
                            tag: NESTED_TRAP_TAG,
                            payloads: [u64::from(code), index],
                        }),
                        _ => panic!("%{name}: trap {code} in {function}"),
                    }
                }
                Err(e) => panic!("%{name}: {e}"),
            }
        }
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
