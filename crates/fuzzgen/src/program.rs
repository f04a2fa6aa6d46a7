//! The description of a random exception program, and its generation.
//!
//! Every function `%fK` has the signature `(i64, f64) -> i64` with the
//! `tail` or `system_v` convention. It keeps an integer accumulator (starting
//! at its first argument) and a float (its second), runs its statements, and
//! returns `acc + fcvt_to_sint_sat(float)`. Functions only call functions
//! with a higher index, so every program terminates. `%main(i64) -> i64`
//! calls `%f0(x, 1.25)`, catching everything when [`Program::main_catches`]
//! (and then returning `payload0 * 1_000_003 + payload1`).
//!
//! A [`Stmt::Host`] calls a host function `%hN` (numbered in
//! [`Program::hosts`] order), `system_v` with the same signature,
//! which returns, throws into the JIT frames, ends the entry it was called
//! under ([`HostAction`]), or calls back into the program through a nested
//! entry — or a CLIF function that stands in for it, which a `test run`
//! file can hold.

use arbitrary::{Result, Unstructured};

/// Largest number of functions.
pub const MAX_FUNCTIONS: usize = 6;
/// Largest number of statements in a function body or loop body.
pub const MAX_STATEMENTS: usize = 7;
/// Largest number of calls any one execution of a program may make (the
/// generator keeps programs under it, so emulation stays quick).
pub const CALL_BUDGET: u64 = 400;
/// Exception tags used (1..=TAGS).
pub const TAGS: u32 = 4;
/// The tag a [`HostAction::Reenter`] host function ends its entry with
/// when the nested call traps (payloads: the user trap code and `K` of the
/// `%fK` that trapped).
pub const NESTED_TRAP_TAG: u32 = TAGS + 1;

/// How a call of `%main` ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
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

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Value(v) => write!(f, "returns {v}"),
            Ending::Exception { tag, payloads } => write!(
                f,
                "uncaught exception tag{tag} (payloads {:#x}, {:#x})",
                payloads[0], payloads[1]
            ),
            Ending::Trap { code, function } => write!(f, "trap user{code} in {function}"),
            Ending::Failed(message) => write!(f, "failed: {message}"),
        }
    }
}

/// A whole program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// `%f0`, `%f1`, ...; `%fK` calls only `%fJ` with `J > K`.
    pub functions: Vec<Function>,
    /// Whether `%main` catches every exception (else an exception escaping
    /// `%f0` is the call's outcome).
    pub main_catches: bool,
    /// The argument `%main` is called with.
    pub argument: i64,
    /// Whether the module is loaded a function at a time (every function
    /// declared, then each defined and finalized on its own, callees first,
    /// host stand-ins before all), rather than with one finalize.
    pub incremental: bool,
}

/// A callee's calling convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conv {
    /// `tail`.
    Tail,
    /// `system_v`.
    SystemV,
}

/// One function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// Its calling convention.
    pub conv: Conv,
    /// What it does, in order.
    pub body: Vec<Stmt>,
}

/// Integer operation of an [`Stmt::Arith`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    /// Wrapping addition.
    Add,
    /// Wrapping multiplication.
    Mul,
    /// Exclusive or.
    Xor,
}

/// `(acc & mask) == equals`; `mask == 0` is always true.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Condition {
    /// 0, 1, 3 or 7.
    pub mask: i64,
    /// In `0..=mask`.
    pub equals: i64,
}

impl Condition {
    /// Whether it holds for `acc`.
    pub fn holds(&self, acc: i64) -> bool {
        acc & self.mask == self.equals
    }
}

/// Which exceptions a handler-table entry catches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// Exactly this tag.
    Tag(u32),
    /// Any tag.
    Default,
}

/// What a handler block does with `(payload0, payload1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Continue: `acc = acc * 3 + payload0 + payload1 * 7 + constant`, and
    /// the float gains 1.0.
    Resume {
        /// Added to the accumulator.
        constant: i64,
    },
    /// Throw `tag` with payloads `(acc + payload0, tag)` from the handler.
    Rethrow {
        /// The new tag.
        tag: u32,
    },
}

/// A `try_call`'s handler table: entries in order, each naming one of the
/// actions (several entries may share an action: a shared handler block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handlers {
    /// `(key, index into actions)`, in table order.
    pub entries: Vec<(Key, usize)>,
    /// The handler blocks.
    pub actions: Vec<Action>,
}

impl Handlers {
    /// The action an exception with `tag` selects: the first entry whose key
    /// matches, as a `try_call` does.
    pub fn select(&self, tag: u32) -> Option<Action> {
        self.entries
            .iter()
            .find(|(key, _)| matches!(key, Key::Default) || *key == Key::Tag(tag))
            .map(|&(_, action)| self.actions[action])
    }
}

/// What a host function `%hN` does when called with `(acc, float)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostAction {
    /// Return `acc * 5 + (float * 2.0) as i64 + constant`.
    Return {
        /// Added to the result.
        constant: i64,
    },
    /// When the condition holds, throw `tag` with payloads
    /// `(acc, tag + 16)` into the JIT frames (`HostThrow::Exception`: a
    /// stack walk from the host function's caller); else return as
    /// `Return { constant: 0 }` does.
    Throw {
        /// The tag.
        tag: u32,
        /// When.
        when: Condition,
    },
    /// When the condition holds, end the innermost entry with an exception
    /// `tag`, payloads `(acc, tag + 32)` (`HostThrow::ToEntry`: no JIT
    /// handler sees it); else return as `Return { constant: 0 }` does.
    ToEntry {
        /// The tag.
        tag: u32,
        /// When.
        when: Condition,
    },
    /// Call `%f{callee}(acc, float)` through a nested entry and return its
    /// result + 1. An exception that ends the nested call is thrown on into
    /// the JIT frames (as `Throw`); a trap `user{code}` in `%fK` ends the
    /// host function's own entry with [`NESTED_TRAP_TAG`] and payloads
    /// `(code, K)`.
    Reenter {
        /// The callee's index (greater than the calling function's).
        callee: usize,
    },
}

/// One statement of a function body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    /// `acc = acc op constant`; `float = float * 0.5 + (constant % 16)`.
    Arith {
        /// The operation.
        op: ArithOp,
        /// Its constant.
        constant: i64,
    },
    /// Call `%f{callee}(acc, float)`; on return `acc += result`.
    Call {
        /// The callee's index (greater than the caller's).
        callee: usize,
        /// Through `func_addr` and `call_indirect`/`try_call_indirect`.
        indirect: bool,
        /// A `try_call` with this table; `None` is a plain call, which
        /// exceptions pass through.
        handlers: Option<Handlers>,
        /// After the call, add `get_exception_handler_address(..) != 0` (1)
        /// for this handler index (only with handlers).
        handler_address: Option<usize>,
    },
    /// When the condition holds, throw `tag` with payloads `(acc, tag)`
    /// through `%__cranelift_throw`.
    Throw {
        /// The tag.
        tag: u32,
        /// When.
        when: Condition,
    },
    /// When the condition holds, trap with `user{code}`.
    Trap {
        /// The user trap code.
        code: u8,
        /// When.
        when: Condition,
    },
    /// Call the host function of `action` with `(acc, float)`; on return
    /// `acc += result`, as for a [`Stmt::Call`].
    Host {
        /// What the host function does.
        action: HostAction,
        /// A `try_call` with this table; `None` is a plain call.
        handlers: Option<Handlers>,
        /// Whether `%hN` is instead a CLIF function, which a `test run` file
        /// can hold: it throws through `%__cranelift_throw` or
        /// `%__cranelift_exn_throw_to_entry`, and a `Reenter` calls `%fK`
        /// directly (no nested entry: an exception or trap that ends `%fK`
        /// passes on as it would from any call, and a `ToEntry` in it ends
        /// the outer entry).
        in_clif: bool,
    },
    /// Run `body` `count` times (at least once).
    Loop {
        /// Iterations.
        count: u8,
        /// Any statements but loops.
        body: Vec<Stmt>,
    },
}

impl Program {
    /// The action of each host statement and whether its `%hN` is a CLIF
    /// function (`in_clif`), in the order they are numbered (`%h0`, `%h1`,
    /// ...): function by function, statements in order, a loop's body once.
    pub fn hosts(&self) -> Vec<(HostAction, bool)> {
        fn collect(body: &[Stmt], out: &mut Vec<(HostAction, bool)>) {
            for stmt in body {
                match stmt {
                    Stmt::Host {
                        action, in_clif, ..
                    } => out.push((*action, *in_clif)),
                    Stmt::Loop { body, .. } => collect(body, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        for function in &self.functions {
            collect(&function.body, &mut out);
        }
        out
    }
}

/// The program for `seed`: the same seed always gives the same program.
pub fn from_seed(seed: u64) -> Program {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..4096)
        .flat_map(|_| splitmix64(&mut state).to_le_bytes())
        .collect();
    // Generation never fails: it falls back to defaults when bytes run out.
    generate(&mut Unstructured::new(&bytes)).unwrap_or_else(|_| Program {
        functions: vec![Function {
            conv: Conv::Tail,
            body: Vec::new(),
        }],
        main_catches: true,
        argument: 0,
        incremental: false,
    })
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A program from fuzzer bytes.
pub fn generate(u: &mut Unstructured) -> Result<Program> {
    let count = u.int_in_range(1..=MAX_FUNCTIONS)?;
    // Generated from the last function to the first, so each call's cost
    // (calls made per execution, loops included) is known and the total
    // stays under CALL_BUDGET.
    let mut functions = Vec::with_capacity(count);
    let mut costs = vec![0u64; count];
    for index in (0..count).rev() {
        let conv = if u.arbitrary()? {
            Conv::Tail
        } else {
            Conv::SystemV
        };
        let mut budget = CALL_BUDGET;
        let body = statements(u, index, count, &costs, &mut budget, true)?;
        costs[index] = CALL_BUDGET - budget;
        functions.push(Function { conv, body });
    }
    functions.reverse();
    Ok(Program {
        functions,
        main_catches: u.ratio(3, 4)?,
        argument: u.int_in_range(-20..=20)?,
        incremental: u.ratio(1, 3)?,
    })
}

fn statements(
    u: &mut Unstructured,
    index: usize,
    count: usize,
    costs: &[u64],
    budget: &mut u64,
    outer: bool,
) -> Result<Vec<Stmt>> {
    let len = u.int_in_range(0..=MAX_STATEMENTS)?;
    let mut body = Vec::with_capacity(len);
    for _ in 0..len {
        let choice = u.int_in_range(0..=10)?;
        let stmt = match choice {
            0..=3 if index + 1 < count => {
                let callee = u.int_in_range(index + 1..=count - 1)?;
                let cost = costs[callee] + 1;
                if cost > *budget {
                    arith(u)?
                } else {
                    *budget -= cost;
                    call(u, callee)?
                }
            }
            4 if outer => {
                let iterations = u.int_in_range(1..=3)?;
                // The body runs `iterations` times: give it that share of
                // the budget.
                let mut inner = *budget / u64::from(iterations);
                let before = inner;
                let body = statements(u, index, count, costs, &mut inner, false)?;
                *budget -= (before - inner) * u64::from(iterations);
                Stmt::Loop {
                    count: iterations,
                    body,
                }
            }
            5 | 6 => Stmt::Throw {
                tag: u.int_in_range(1..=TAGS)?,
                when: condition(u)?,
            },
            7 => Stmt::Trap {
                code: u.int_in_range(1..=9)?,
                when: Condition {
                    mask: 7,
                    equals: u.int_in_range(0..=7)?,
                },
            },
            8 if *budget > 0 => {
                let action = host_action(u, index, count, costs, budget)?;
                Stmt::Host {
                    action,
                    handlers: if u.ratio(1, 2)? {
                        Some(handlers(u)?)
                    } else {
                        None
                    },
                    in_clif: u.ratio(1, 4)?,
                }
            }
            _ => arith(u)?,
        };
        body.push(stmt);
    }
    Ok(body)
}

fn arith(u: &mut Unstructured) -> Result<Stmt> {
    let op = match u.int_in_range(0..=2)? {
        0 => ArithOp::Add,
        1 => ArithOp::Mul,
        _ => ArithOp::Xor,
    };
    Ok(Stmt::Arith {
        op,
        constant: u.int_in_range(-100..=100)?,
    })
}

fn condition(u: &mut Unstructured) -> Result<Condition> {
    let mask = [0, 1, 3, 7][u.int_in_range(0..=3)?];
    Ok(Condition {
        mask,
        equals: u.int_in_range(0..=mask)?,
    })
}

/// A host statement's action; takes its cost (one call, and the nested
/// call's) from `budget`, which must be positive.
fn host_action(
    u: &mut Unstructured,
    index: usize,
    count: usize,
    costs: &[u64],
    budget: &mut u64,
) -> Result<HostAction> {
    *budget -= 1;
    let action = match u.int_in_range(0..=9)? {
        0..=2 if index + 1 < count => {
            let callee = u.int_in_range(index + 1..=count - 1)?;
            if costs[callee] + 1 > *budget {
                HostAction::Return { constant: 0 }
            } else {
                *budget -= costs[callee] + 1;
                HostAction::Reenter { callee }
            }
        }
        3..=5 => HostAction::Throw {
            tag: u.int_in_range(1..=TAGS)?,
            when: condition(u)?,
        },
        6 | 7 => HostAction::ToEntry {
            tag: u.int_in_range(1..=TAGS)?,
            when: condition(u)?,
        },
        _ => HostAction::Return {
            constant: u.int_in_range(-100..=100)?,
        },
    };
    Ok(action)
}

fn call(u: &mut Unstructured, callee: usize) -> Result<Stmt> {
    let indirect = u.ratio(1, 3)?;
    let handlers = if u.ratio(2, 3)? {
        Some(handlers(u)?)
    } else {
        None
    };
    let handler_address = match &handlers {
        Some(h) if u.arbitrary()? => Some(u.int_in_range(0..=h.entries.len() - 1)?),
        _ => None,
    };
    Ok(Stmt::Call {
        callee,
        indirect,
        handlers,
        handler_address,
    })
}

/// A `try_call`'s handler table.
fn handlers(u: &mut Unstructured) -> Result<Handlers> {
    let actions: Vec<Action> = (0..u.int_in_range(1..=3)?)
        .map(|_| {
            Ok(if u.ratio(1, 4)? {
                Action::Rethrow {
                    tag: u.int_in_range(1..=TAGS)?,
                }
            } else {
                Action::Resume {
                    constant: u.int_in_range(0..=50)?,
                }
            })
        })
        .collect::<Result<_>>()?;
    let mut entries = Vec::new();
    for _ in 0..u.int_in_range(1..=4)? {
        let key = if u.ratio(1, 4)? {
            Key::Default
        } else {
            Key::Tag(u.int_in_range(1..=TAGS)?)
        };
        entries.push((key, u.int_in_range(0..=actions.len() - 1)?));
    }
    Ok(Handlers { entries, actions })
}
