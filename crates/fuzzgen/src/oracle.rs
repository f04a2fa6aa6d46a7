//! The expected outcome of a [`Program`], computed from its description
//! alone (no Cranelift involved).

use crate::program::{
    Action, ArithOp, Ending, Handlers, HostAction, NESTED_TRAP_TAG, Program, Stmt,
};

/// How a function invocation ended.
enum Exit {
    Return(i64),
    Throw {
        tag: u32,
        payloads: [u64; 2],
    },
    Trap {
        code: u8,
        function: usize,
    },
    /// A host function's `ToEntry`: straight to the innermost entry, past
    /// every handler.
    ToEntry {
        tag: u32,
        payloads: [u64; 2],
    },
}

/// The outcome of calling `%main(program.argument)`.
pub fn expected(program: &Program) -> Ending {
    match call(program, 0, program.argument, 1.25) {
        Exit::Return(v) => Ending::Value(v),
        Exit::Throw { tag, payloads } => {
            if program.main_catches {
                Ending::Value(catch_all_value(payloads))
            } else {
                Ending::Exception { tag, payloads }
            }
        }
        Exit::Trap { code, function } => Ending::Trap {
            code,
            function: format!("%f{function}"),
        },
        Exit::ToEntry { tag, payloads } => Ending::Exception { tag, payloads },
    }
}

/// What `%main`'s catch-all handler returns for `payloads`.
pub fn catch_all_value(payloads: [u64; 2]) -> i64 {
    (payloads[0] as i64)
        .wrapping_mul(1_000_003)
        .wrapping_add(payloads[1] as i64)
}

/// The float update of an arithmetic statement.
pub fn float_step(float: f64, constant: i64) -> f64 {
    float * 0.5 + (constant % 16) as f64
}

fn call(program: &Program, index: usize, acc: i64, float: f64) -> Exit {
    let mut state = State { acc, float };
    match run(program, index, &program.functions[index].body, &mut state) {
        Ok(()) => Exit::Return(state.acc.wrapping_add(state.float as i64)),
        Err(exit) => exit,
    }
}

struct State {
    acc: i64,
    float: f64,
}

fn run(program: &Program, index: usize, body: &[Stmt], state: &mut State) -> Result<(), Exit> {
    for stmt in body {
        match stmt {
            Stmt::Arith { op, constant } => {
                state.acc = match op {
                    ArithOp::Add => state.acc.wrapping_add(*constant),
                    ArithOp::Mul => state.acc.wrapping_mul(*constant),
                    ArithOp::Xor => state.acc ^ constant,
                };
                state.float = float_step(state.float, *constant);
            }
            Stmt::Call {
                callee,
                handlers,
                handler_address,
                ..
            } => {
                let exit = call(program, *callee, state.acc, state.float);
                returned(exit, handlers.as_ref(), state)?;
                if handler_address.is_some() {
                    // A handler's address is never zero.
                    state.acc = state.acc.wrapping_add(1);
                }
            }
            Stmt::Host {
                action,
                handlers,
                in_clif,
            } => {
                let exit = host(program, *action, *in_clif, state.acc, state.float);
                returned(exit, handlers.as_ref(), state)?;
            }
            Stmt::Throw { tag, when } => {
                if when.holds(state.acc) {
                    return Err(Exit::Throw {
                        tag: *tag,
                        payloads: [state.acc as u64, u64::from(*tag)],
                    });
                }
            }
            Stmt::Trap { code, when } => {
                if when.holds(state.acc) {
                    return Err(Exit::Trap {
                        code: *code,
                        function: index,
                    });
                }
            }
            Stmt::Loop { count, body } => {
                for _ in 0..*count {
                    run(program, index, body, state)?;
                }
            }
        }
    }
    Ok(())
}

/// The state after a call (of a JIT or host function) with `handlers`
/// ended with `exit`: the result added to the accumulator, or a caught
/// exception's handler run; or how the caller ends.
fn returned(exit: Exit, handlers: Option<&Handlers>, state: &mut State) -> Result<(), Exit> {
    let before = state.acc;
    match exit {
        Exit::Return(r) => state.acc = before.wrapping_add(r),
        Exit::Throw { tag, payloads } => match handlers.and_then(|h| h.select(tag)) {
            Some(Action::Resume { constant }) => {
                state.acc = before
                    .wrapping_mul(3)
                    .wrapping_add(payloads[0] as i64)
                    .wrapping_add((payloads[1] as i64).wrapping_mul(7))
                    .wrapping_add(constant);
                state.float += 1.0;
            }
            Some(Action::Rethrow { tag }) => {
                return Err(Exit::Throw {
                    tag,
                    payloads: [
                        before.wrapping_add(payloads[0] as i64) as u64,
                        u64::from(tag),
                    ],
                });
            }
            None => return Err(Exit::Throw { tag, payloads }),
        },
        other @ (Exit::Trap { .. } | Exit::ToEntry { .. }) => return Err(other),
    }
    Ok(())
}

/// What the host function of `action` (or the CLIF function that stands
/// in for it, `in_clif`) does when called with `(acc, float)`.
fn host(program: &Program, action: HostAction, in_clif: bool, acc: i64, float: f64) -> Exit {
    let value = |constant: i64| {
        Exit::Return(
            acc.wrapping_mul(5)
                .wrapping_add((float * 2.0) as i64)
                .wrapping_add(constant),
        )
    };
    match action {
        HostAction::Return { constant } => value(constant),
        HostAction::Throw { tag, when } if when.holds(acc) => Exit::Throw {
            tag,
            payloads: [acc as u64, u64::from(tag + 16)],
        },
        HostAction::ToEntry { tag, when } if when.holds(acc) => Exit::ToEntry {
            tag,
            payloads: [acc as u64, u64::from(tag + 32)],
        },
        HostAction::Throw { .. } | HostAction::ToEntry { .. } => value(0),
        // The nested entry ends what reaches it: an exception (thrown, or
        // sent to it) comes back as one, which the host function throws on.
        HostAction::Reenter { callee } if in_clif => match call(program, callee, acc, float) {
            Exit::Return(r) => Exit::Return(r.wrapping_add(1)),
            other => other,
        },
        HostAction::Reenter { callee } => match call(program, callee, acc, float) {
            Exit::Return(r) => Exit::Return(r.wrapping_add(1)),
            Exit::Throw { tag, payloads } | Exit::ToEntry { tag, payloads } => {
                Exit::Throw { tag, payloads }
            }
            Exit::Trap { code, function } => Exit::ToEntry {
                tag: NESTED_TRAP_TAG,
                payloads: [u64::from(code), function as u64],
            },
        },
    }
}
