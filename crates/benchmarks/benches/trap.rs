//! Trap delivery: a JIT trap reported through our signal-context rewrite,
//! against sigsetjmp/siglongjmp out of a signal handler in C.

#[macro_use]
mod common;

use std::hint::black_box;

use cranelift_exn::CallError;
use cranelift_exn_benchmarks::c::{CTrapHandlers, TrapKind};
use cranelift_exn_benchmarks::jit::JitBench;
use criterion::Criterion;

fn trap(c: &mut Criterion) {
    let mut bench = JitBench::new().expect("the benchmark module loads");
    let mut group = c.benchmark_group("trap");
    for (name, divide) in [("jit_ud2", false), ("jit_divz", true)] {
        assert!(matches!(bench.trap(divide), Err(CallError::Trap { .. })));
        group.bench_function(name, |b| {
            b.iter(|| black_box(bench.trap(black_box(divide))))
        });
    }
    // The C handlers replace ours while installed (and put ours back when
    // dropped), so they are installed around each measurement only.
    for (name, kind, nodefer) in [
        ("c_sigsetjmp_ud2", TrapKind::Ud2, false),
        ("c_sigsetjmp_divz", TrapKind::DivideByZero, false),
        ("c_nodefer_setjmp_ud2", TrapKind::Ud2, true),
        ("c_nodefer_setjmp_divz", TrapKind::DivideByZero, true),
    ] {
        group.bench_function(name, |b| {
            let handlers = CTrapHandlers::install(nodefer).expect("C handlers install");
            b.iter(|| handlers.trap(black_box(kind), !nodefer));
            drop(handlers);
        });
    }
    assert!(matches!(bench.trap(true), Err(CallError::Trap { .. })));
    group.finish();
}

bench_main!(trap, 30);
