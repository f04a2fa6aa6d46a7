//! Trap delivery: a JIT trap reported through our signal-context rewrite,
//! against sigsetjmp/siglongjmp out of a signal handler in C.

use std::hint::black_box;
use std::time::Duration;

use cranelift_exn::CallError;
use cranelift_exn_benchmarks::c::{CTrapHandlers, TrapKind};
use cranelift_exn_benchmarks::jit::JitBench;
use criterion::{Criterion, criterion_group, criterion_main};

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

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = trap
}
criterion_main!(benches);
