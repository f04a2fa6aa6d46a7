//! Generated programs on the host CPU agree with the oracle.

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::compile::default_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::native::NativeMachine;
use cranelift_exn_fuzzgen::program::{
    Action, Condition, Conv, Function, Handlers, HostAction, Key, NESTED_TRAP_TAG, Program, Stmt,
    from_seed,
};
use cranelift_exn_fuzzgen::{Ending, clif, harness, minimize, oracle};

/// How many seeds a test sweeps: `default`, or `CRANELIFT_EXN_SWEEP_SEEDS`
/// (scripts/cross lowers it: the debug-built generator and Cranelift run
/// about twenty times slower under qemu-user).
fn seeds(default: u64) -> u64 {
    std::env::var("CRANELIFT_EXN_SWEEP_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn seeds_are_deterministic_and_print_valid_clif() {
    for seed in 0..seeds(200) {
        let program = from_seed(seed);
        assert_eq!(program, from_seed(seed));
        let text = clif::print(&program);
        let functions = cranelift_exn::reader::parse_functions(&text)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
        let in_clif = program.hosts().iter().filter(|(_, c)| *c).count();
        assert_eq!(functions.len(), program.functions.len() + 1 + in_clif);
    }
}

#[test]
fn native_runs_match_the_oracle() {
    let Some(arch) = Arch::host() else { return };
    let isa = default_isa(arch).unwrap();
    let mut outcomes = std::collections::HashMap::new();
    let count = seeds(300);
    for seed in 0..count {
        let program = from_seed(seed);
        let machine = Box::new(NativeMachine::new().unwrap());
        if let Err(m) = harness::check(&program, "native", isa.as_ref(), machine) {
            panic!("seed {seed}: {m}\n{}", clif::print(&program));
        }
        let kind = match oracle::expected(&program) {
            Ending::Value(_) => "value",
            Ending::Exception { .. } => "exception",
            Ending::Trap { .. } => "trap",
            Ending::Failed(_) => "failed",
        };
        *outcomes.entry(kind).or_insert(0) += 1;
    }
    // The generator reaches every kind of outcome (10 of each in the
    // default 300 seeds).
    for kind in ["value", "exception", "trap"] {
        assert!(
            outcomes.get(kind).copied().unwrap_or(0) >= (count / 30).max(1),
            "{outcomes:?}"
        );
    }
}

#[test]
fn minimizing_keeps_the_property_and_shrinks() {
    // The property: %f0 still calls a function with a rethrow handler.
    fn has_rethrow(body: &[Stmt]) -> bool {
        body.iter().any(|s| match s {
            Stmt::Call {
                handlers: Some(h), ..
            } => h
                .actions
                .iter()
                .any(|a| matches!(a, Action::Rethrow { .. })),
            Stmt::Loop { body, .. } => has_rethrow(body),
            _ => false,
        })
    }
    let program = (0..)
        .map(from_seed)
        .find(|p| has_rethrow(&p.functions[0].body) && p.functions.len() >= 3)
        .unwrap();
    let small = minimize::minimize(&program, |p| has_rethrow(&p.functions[0].body));
    assert!(has_rethrow(&small.functions[0].body));
    let statements: usize = small.functions.iter().map(|f| f.body.len()).sum();
    assert_eq!(statements, 1, "{small:#?}");
    assert_eq!(small.functions.len(), 2, "the caller and its callee remain");
}

/// A host function the property does not need as one becomes a CLIF
/// function, which a reproduction file can hold.
#[test]
fn minimizing_turns_host_functions_into_clif() {
    fn throwing_host(body: &[Stmt]) -> bool {
        body.iter().any(|s| match s {
            Stmt::Host { action, .. } => matches!(action, HostAction::Throw { .. }),
            Stmt::Loop { body, .. } => throwing_host(body),
            _ => false,
        })
    }
    // %f0 still calls a host function that throws.
    let property = |p: &Program| throwing_host(&p.functions[0].body);
    let program = (0..)
        .map(from_seed)
        .find(|p| property(p) && p.functions.len() >= 2 && p.hosts().iter().any(|(_, c)| !c))
        .unwrap();
    let small = minimize::minimize(&program, property);
    assert_eq!(small.functions.len(), 1, "{small:#?}");
    assert!(
        matches!(
            small.functions[0].body[..],
            [Stmt::Host {
                action: HostAction::Throw { .. },
                handlers: None,
                in_clif: true,
            }]
        ),
        "{small:#?}"
    );
}

/// A condition that always holds.
const ALWAYS: Condition = Condition { mask: 0, equals: 0 };

/// `%f0` running `body` (and `%f1` running `callee`), `%main(argument)`
/// catching everything.
fn program(body: Vec<Stmt>, callee: Vec<Stmt>, argument: i64) -> Program {
    let function = |body| Function {
        conv: Conv::SystemV,
        body,
    };
    Program {
        functions: vec![function(body), function(callee)],
        main_catches: true,
        argument,
        incremental: false,
    }
}

fn host(action: HostAction, handlers: Option<Handlers>, in_clif: bool) -> Stmt {
    Stmt::Host {
        action,
        handlers,
        in_clif,
    }
}

/// Outcomes worked out by hand, for each way a host function can end, with
/// the host function and with the CLIF function that stands in for it: the
/// oracle and the machine both have to get them.
#[test]
fn host_functions_end_as_worked_out_by_hand() {
    let Some(arch) = Arch::host() else { return };
    let isa = default_isa(arch).unwrap();
    let catch_tag2 = Handlers {
        entries: vec![(Key::Tag(2), 0)],
        actions: vec![Action::Resume { constant: 4 }],
    };
    let catch_all = Handlers {
        entries: vec![(Key::Default, 0)],
        actions: vec![Action::Resume { constant: 0 }],
    };
    let trap = Stmt::Trap {
        code: 3,
        when: ALWAYS,
    };
    let mut cases = Vec::new();
    for in_clif in [false, true] {
        // 10 * 5 + (1.25 * 2.0) as i64 + 7 = 59; %f0 adds it to 10 and
        // returns 69 + (1.25 as i64).
        let returns = host(HostAction::Return { constant: 7 }, None, in_clif);
        cases.push((program(vec![returns], vec![], 10), Ending::Value(70)));
        // Tag 2, payloads (10, 18), caught where %f0 calls: 10 * 3 + 10 +
        // 18 * 7 + 4 = 170, the float 2.25: 172.
        let throws = HostAction::Throw {
            tag: 2,
            when: ALWAYS,
        };
        let caught = host(throws, Some(catch_tag2.clone()), in_clif);
        cases.push((program(vec![caught], vec![], 10), Ending::Value(172)));
        // Straight to the entry, past %f0's and %main's catch-alls.
        let to_entry = HostAction::ToEntry {
            tag: 1,
            when: ALWAYS,
        };
        let uncaught = host(to_entry, Some(catch_all.clone()), in_clif);
        let exception = Ending::Exception {
            tag: 1,
            payloads: [10, 33],
        };
        cases.push((program(vec![uncaught], vec![], 10), exception));
        // %f1 returns 10 + 1; the host function 12, %f0 22 + 1.
        let reenter = host(HostAction::Reenter { callee: 1 }, None, in_clif);
        cases.push((
            program(vec![reenter.clone()], vec![], 10),
            Ending::Value(23),
        ));
        // %f1 traps: the nested entry ends, and the host function sends
        // the trap to the outer entry as an exception; without a nested
        // entry the trap itself ends the call.
        let trapped = if in_clif {
            Ending::Trap {
                code: 3,
                function: "%f1".into(),
            }
        } else {
            Ending::Exception {
                tag: NESTED_TRAP_TAG,
                payloads: [3, 1],
            }
        };
        cases.push((program(vec![reenter], vec![trap.clone()], 10), trapped));
    }
    for (mut program, expected) in cases {
        assert_eq!(oracle::expected(&program), expected, "{program:?}");
        for incremental in [false, true] {
            program.incremental = incremental;
            let machine = Box::new(NativeMachine::new().unwrap());
            let actual = harness::execute(&program, isa.as_ref(), machine);
            assert_eq!(actual, expected, "{incremental}: {}", clif::print(&program));
        }
    }
}

/// An incremental load finalizes each function on its own, callees first:
/// as many images as CLIF functions, and nothing left waiting.
#[test]
fn an_incremental_load_finalizes_each_function_on_its_own() {
    let Some(arch) = Arch::host() else { return };
    let isa = default_isa(arch).unwrap();
    let calls = |callee| Stmt::Call {
        callee,
        indirect: false,
        handlers: None,
        handler_address: None,
    };
    let throws = HostAction::Throw {
        tag: 1,
        when: ALWAYS,
    };
    let mut program = program(vec![calls(1), host(throws, None, true)], vec![], 3);
    program.incremental = true;
    let text = clif::print(&program);
    let functions = cranelift_exn::reader::parse_functions(&text).unwrap();
    assert_eq!(functions.len(), 4, "%main, %f0, %f1, %h0");
    let machine = Box::new(NativeMachine::new().unwrap());
    let module = harness::load(&program, isa.as_ref(), machine, functions).unwrap();
    assert_eq!(module.images().len(), 4);
    assert!(module.waiting().is_empty());
    // %f1 returns 3 + 1; %h0 throws tag 1 with (7, 17), which %main
    // catches: 7 * 1_000_003 + 17.
    let expected = 7 * 1_000_003 + 17;
    assert_eq!(oracle::expected(&program), Ending::Value(expected));
    let value = module.call("main", &[DataValue::I64(program.argument)]);
    assert_eq!(value, Ok(vec![DataValue::I64(expected)]));
}

/// The generator reaches what only host functions do: outcomes of a
/// `ToEntry` and of a trap in a nested entry, and values computed through
/// nested entries.
#[test]
fn generated_host_functions_reach_their_outcomes() {
    let mut to_entry = 0;
    let mut nested_trap = 0;
    let mut reentered_values = 0;
    // The oracle alone: quick under qemu-user too.
    for seed in 0..300 {
        let program = from_seed(seed);
        let reenters = program
            .hosts()
            .iter()
            .any(|(a, _)| matches!(a, HostAction::Reenter { .. }));
        match oracle::expected(&program) {
            Ending::Exception { tag, .. } if tag == NESTED_TRAP_TAG => nested_trap += 1,
            Ending::Exception { tag, payloads } if payloads[1] == u64::from(tag + 32) => {
                to_entry += 1
            }
            Ending::Value(_) if reenters => reentered_values += 1,
            _ => {}
        }
    }
    assert!(
        to_entry >= 3 && nested_trap >= 1 && reentered_values >= 10,
        "{to_entry} {nested_trap} {reentered_values}"
    );
}
