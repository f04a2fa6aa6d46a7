//! Generated programs on the host CPU agree with the oracle.

use cranelift_exn::compile::default_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::native::NativeMachine;
use cranelift_exn_fuzzgen::program::{Stmt, from_seed};
use cranelift_exn_fuzzgen::{clif, harness, minimize, oracle};

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
        assert_eq!(functions.len(), program.functions.len() + 1);
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
            cranelift_exn_fuzzgen::Ending::Value(_) => "value",
            cranelift_exn_fuzzgen::Ending::Exception { .. } => "exception",
            cranelift_exn_fuzzgen::Ending::Trap { .. } => "trap",
            cranelift_exn_fuzzgen::Ending::Failed(_) => "failed",
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
    // The property: the program still contains a rethrow somewhere.
    fn has_rethrow(body: &[Stmt]) -> bool {
        body.iter().any(|s| match s {
            Stmt::Call {
                handlers: Some(h), ..
            } => h
                .actions
                .iter()
                .any(|a| matches!(a, cranelift_exn_fuzzgen::program::Action::Rethrow { .. })),
            Stmt::Loop { body, .. } => has_rethrow(body),
            _ => false,
        })
    }
    let program = (0..)
        .map(from_seed)
        .find(|p| p.functions.iter().any(|f| has_rethrow(&f.body)) && p.functions.len() >= 3)
        .unwrap();
    let small = minimize::minimize(&program, |p| {
        p.functions.iter().any(|f| has_rethrow(&f.body))
    });
    assert!(small.functions.iter().any(|f| has_rethrow(&f.body)));
    let statements: usize = small.functions.iter().map(|f| f.body.len()).sum();
    assert_eq!(statements, 1, "{small:#?}");
    assert_eq!(small.functions.len(), 2, "the caller and its callee remain");
}
