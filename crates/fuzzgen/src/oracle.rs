//! The expected outcome of a [`Program`], computed from its description
//! alone (no Cranelift involved).

use crate::program::{Action, ArithOp, Ending, Program, Stmt};

/// How a function invocation ended.
enum Exit {
    Return(i64),
    Throw { tag: u32, payloads: [u64; 2] },
    Trap { code: u8, function: usize },
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
                let before = state.acc;
                match call(program, *callee, state.acc, state.float) {
                    Exit::Return(r) => state.acc = before.wrapping_add(r),
                    Exit::Throw { tag, payloads } => {
                        match handlers.as_ref().and_then(|h| h.select(tag)) {
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
                        }
                    }
                    trap @ Exit::Trap { .. } => return Err(trap),
                }
                if handler_address.is_some() {
                    // A handler's address is never zero.
                    state.acc = state.acc.wrapping_add(1);
                }
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
