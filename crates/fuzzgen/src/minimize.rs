//! Shrinking a program while a property (a mismatch) still holds.

use crate::program::{Function, Handlers, HostAction, Program, Stmt};

/// The smallest program reachable from `program` by removing functions,
/// statements and handler entries, turning try_calls into plain calls and
/// indirect calls into direct ones, host functions into ones that return
/// and into CLIF functions, an incremental load into one finalize, and
/// shortening loops, for which
/// `still_fails` stays true. `still_fails(program)` must be true.
pub fn minimize(program: &Program, mut still_fails: impl FnMut(&Program) -> bool) -> Program {
    let mut best = program.clone();
    loop {
        let mut improved = false;
        for candidate in candidates(&best) {
            if size(&candidate) < size(&best) && still_fails(&candidate) {
                best = candidate;
                improved = true;
                break;
            }
        }
        if !improved {
            return best;
        }
    }
}

/// A measure that every simplification decreases.
fn size(program: &Program) -> usize {
    fn body(stmts: &[Stmt]) -> usize {
        stmts
            .iter()
            .map(|s| match s {
                Stmt::Call {
                    handlers,
                    indirect,
                    handler_address,
                    ..
                } => {
                    4 + usize::from(*indirect)
                        + usize::from(handler_address.is_some())
                        + handlers.as_ref().map_or(0, handlers_size)
                }
                Stmt::Host {
                    action,
                    handlers,
                    in_clif,
                } => {
                    let action = match action {
                        HostAction::Return { .. } => 0,
                        HostAction::Throw { .. } | HostAction::ToEntry { .. } => 1,
                        HostAction::Reenter { .. } => 2,
                    };
                    3 + action + usize::from(!in_clif) + handlers.as_ref().map_or(0, handlers_size)
                }
                Stmt::Loop { count, body: b } => 2 + usize::from(*count) + body(b),
                _ => 2,
            })
            .sum()
    }
    program
        .functions
        .iter()
        .map(|f| 1 + body(&f.body))
        .sum::<usize>()
        + usize::from(!program.main_catches)
        + usize::from(program.incremental)
}

fn handlers_size(handlers: &Handlers) -> usize {
    2 + handlers.entries.len() + handlers.actions.len()
}

/// Every one-step simplification of `program`.
fn candidates(program: &Program) -> Vec<Program> {
    let mut out = Vec::new();
    // Drop a function (not %f0, which %main calls) and every call to it.
    for removed in 1..program.functions.len() {
        let mut p = program.clone();
        p.functions.remove(removed);
        for f in &mut p.functions {
            f.body = without_calls_to(&f.body, removed);
        }
        out.push(p);
    }
    if !program.main_catches {
        let mut p = program.clone();
        p.main_catches = true;
        out.push(p);
    }
    if program.incremental {
        let mut p = program.clone();
        p.incremental = false;
        out.push(p);
    }
    for (fi, function) in program.functions.iter().enumerate() {
        for body in body_variants(&function.body) {
            let mut p = program.clone();
            p.functions[fi] = Function {
                conv: function.conv,
                body,
            };
            out.push(p);
        }
    }
    out
}

/// `body` without calls to function `removed` (a host function that
/// would call it returns instead), with calls to the functions after it
/// renumbered.
fn without_calls_to(body: &[Stmt], removed: usize) -> Vec<Stmt> {
    let renumbered = |callee: usize| if callee > removed { callee - 1 } else { callee };
    body.iter()
        .filter(|s| !matches!(s, Stmt::Call { callee: c, .. } if *c == removed))
        .map(|s| match s {
            Stmt::Loop { count, body } => Stmt::Loop {
                count: *count,
                body: without_calls_to(body, removed),
            },
            Stmt::Call {
                callee,
                indirect,
                handlers,
                handler_address,
            } => Stmt::Call {
                callee: renumbered(*callee),
                indirect: *indirect,
                handlers: handlers.clone(),
                handler_address: *handler_address,
            },
            Stmt::Host {
                action: HostAction::Reenter { callee },
                handlers,
                in_clif,
            } => Stmt::Host {
                action: if *callee == removed {
                    HostAction::Return { constant: 0 }
                } else {
                    HostAction::Reenter {
                        callee: renumbered(*callee),
                    }
                },
                handlers: handlers.clone(),
                in_clif: *in_clif,
            },
            other => other.clone(),
        })
        .collect()
}

/// Every one-step simplification of a statement list.
fn body_variants(body: &[Stmt]) -> Vec<Vec<Stmt>> {
    let mut out = Vec::new();
    for i in 0..body.len() {
        let mut removed = body.to_vec();
        removed.remove(i);
        out.push(removed);
        for replacement in stmt_variants(&body[i]) {
            let mut changed = body.to_vec();
            changed[i] = replacement;
            out.push(changed);
        }
    }
    out
}

fn stmt_variants(stmt: &Stmt) -> Vec<Stmt> {
    let mut out = Vec::new();
    match stmt {
        Stmt::Call {
            callee,
            indirect,
            handlers,
            handler_address,
        } => {
            let with = |indirect: bool, handlers, handler_address| Stmt::Call {
                callee: *callee,
                indirect,
                handlers,
                handler_address,
            };
            if *indirect {
                out.push(with(false, handlers.clone(), *handler_address));
            }
            if handler_address.is_some() {
                out.push(with(*indirect, handlers.clone(), None));
            }
            if let Some(h) = handlers {
                out.push(with(*indirect, None, None));
                for smaller in smaller_handlers(h) {
                    let address = handler_address.filter(|&a| a < smaller.entries.len());
                    out.push(with(*indirect, Some(smaller), address));
                }
            }
        }
        Stmt::Host {
            action,
            handlers,
            in_clif,
        } => {
            let with = |action, handlers, in_clif| Stmt::Host {
                action,
                handlers,
                in_clif,
            };
            if !matches!(action, HostAction::Return { .. }) {
                out.push(with(
                    HostAction::Return { constant: 0 },
                    handlers.clone(),
                    *in_clif,
                ));
            }
            // A CLIF function instead of the host function: what a
            // reproduction file can hold.
            if !in_clif {
                out.push(with(*action, handlers.clone(), true));
            }
            if let Some(h) = handlers {
                out.push(with(*action, None, *in_clif));
                for smaller in smaller_handlers(h) {
                    out.push(with(*action, Some(smaller), *in_clif));
                }
            }
        }
        Stmt::Loop { count, body } => {
            if *count > 1 {
                out.push(Stmt::Loop {
                    count: count - 1,
                    body: body.clone(),
                });
            }
            for variant in body_variants(body) {
                out.push(Stmt::Loop {
                    count: *count,
                    body: variant,
                });
            }
        }
        _ => {}
    }
    out
}

/// `handlers` without one of its entries, or without an action no entry
/// uses.
fn smaller_handlers(handlers: &Handlers) -> Vec<Handlers> {
    let mut out = Vec::new();
    if handlers.entries.len() > 1 {
        for i in 0..handlers.entries.len() {
            let mut smaller = handlers.clone();
            smaller.entries.remove(i);
            out.push(smaller);
        }
    }
    for a in 0..handlers.actions.len() {
        if handlers.actions.len() > 1 && handlers.entries.iter().all(|&(_, x)| x != a) {
            let mut smaller = handlers.clone();
            smaller.actions.remove(a);
            for entry in &mut smaller.entries {
                if entry.1 > a {
                    entry.1 -= 1;
                }
            }
            out.push(smaller);
        }
    }
    out
}
