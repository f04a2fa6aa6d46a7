//! Trap delivery: a JIT trap reported through our signal-context rewrite,
//! against sigsetjmp/siglongjmp out of a signal handler in C; and the C
//! trap taken apart by fault kind, to tell the CPU exception (and any
//! hypervisor exit) from the kernel's signal delivery.

#[macro_use]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use cranelift_exn::CallError;
use cranelift_exn_benchmarks::c::{self, CReturningTrapHandlers, CTrapHandlers, TrapKind};
use cranelift_exn_benchmarks::jit::JitBench;
use criterion::Criterion;

/// The kinds taken apart, by the name their rows carry.
const KINDS: [(&str, TrapKind); 7] = [
    ("ud2", TrapKind::Ud2),
    ("divz", TrapKind::DivideByZero),
    ("int3", TrapKind::Int3),
    ("hlt", TrapKind::Hlt),
    ("int_n", TrapKind::IntN),
    ("page_fault", TrapKind::PageFault),
    ("tgkill", TrapKind::Tgkill),
];

/// Time-stamp-counter ticks per second, against the monotonic clock over
/// 100 ms; `None` without a counter (not x86_64).
fn tsc_hz() -> Option<f64> {
    let (t0, i0) = (c::tsc(), Instant::now());
    std::thread::sleep(Duration::from_millis(100));
    let (t1, i1) = (c::tsc(), Instant::now());
    (t1 > t0).then(|| (t1 - t0) as f64 / (i1 - i0).as_secs_f64())
}

/// Branchy work with indirect calls: 24 numbers derived from `seed`,
/// sorted through a `dyn Fn` comparator.
#[inline(never)]
fn sort(seed: u32) -> u32 {
    let mut v: [u32; 24] =
        std::array::from_fn(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 97);
    let cmp: &dyn Fn(&u32, &u32) -> std::cmp::Ordering = black_box(&|a: &u32, b: &u32| a.cmp(b));
    v.sort_unstable_by(|a, b| cmp(a, b));
    v[5]
}

fn trap(c: &mut Criterion) {
    let mut bench = JitBench::new().expect("the benchmark module loads");
    let mut group = c.benchmark_group("trap");
    // Each fault's rows one after another, so that a change of load on the
    // machine between rows moves their ratios as little as possible. The C
    // handlers replace ours while installed (and put ours back when
    // dropped), so they are installed around each measurement only.
    for (kind_name, kind, divide) in [
        ("ud2", TrapKind::Ud2, false),
        ("divz", TrapKind::DivideByZero, true),
    ] {
        assert!(matches!(bench.trap(divide), Err(CallError::Trap { .. })));
        group.bench_function(format!("jit_{kind_name}"), |b| {
            b.iter(|| black_box(bench.trap(black_box(divide))))
        });
        // sigsetjmp(env, 1), then SA_NODEFER + sigsetjmp(env, 0): the fault
        // and the delivery with no system call besides.
        for (prefix, nodefer) in [("c_sigsetjmp", false), ("c_nodefer_setjmp", true)] {
            group.bench_function(format!("{prefix}_{kind_name}"), |b| {
                let handlers = CTrapHandlers::install(nodefer).expect("C handlers install");
                assert_eq!(handlers.trap(kind, !nodefer), kind.signal());
                b.iter(|| handlers.trap(black_box(kind), !nodefer));
                drop(handlers);
            });
        }
        // Our way out in C: rewrite the context and return (rt_sigreturn).
        if cfg!(target_arch = "x86_64") {
            group.bench_function(format!("c_return_{kind_name}"), |b| {
                let handlers = CReturningTrapHandlers::install().expect("C handlers install");
                assert_eq!(handlers.trap(kind), Some(kind.signal()));
                b.iter(|| handlers.trap(black_box(kind)));
                drop(handlers);
            });
        }
    }
    // The other kinds' SA_NODEFER round trips (x86_64 only; tgkill raises
    // its signal by a system call).
    if cfg!(target_arch = "x86_64") {
        for &(kind_name, kind) in &KINDS[2..] {
            group.bench_function(format!("c_nodefer_setjmp_{kind_name}"), |b| {
                let handlers = CTrapHandlers::install(true).expect("C handlers install");
                assert_eq!(handlers.trap(kind, false), kind.signal());
                b.iter(|| handlers.trap(black_box(kind), false));
                drop(handlers);
            });
        }
    }
    // The first phase alone: from just before the faulting instruction to
    // the handler's first statement, by the time-stamp counter.
    if let Some(hz) = tsc_hz().filter(|_| cfg!(target_arch = "x86_64")) {
        for &(kind_name, kind) in &KINDS {
            group.bench_function(format!("c_enter_{kind_name}"), |b| {
                let handlers = CTrapHandlers::install(true).expect("C handlers install");
                b.iter_custom(|iterations| {
                    let ([enter, _], signal) = handlers.phases(kind, false, iterations);
                    assert_eq!(signal, kind.signal());
                    Duration::from_secs_f64(enter as f64 / hz)
                });
                drop(handlers);
            });
        }
    }
    // Branchy code right after the fault: what the hypervisor's work on a
    // #UD leaves of the branch predictors. The sort alone is timed with the
    // time-stamp counter (the fault's own time, which varies by
    // microseconds after a #UD, is left out), after a division by zero,
    // after ud2, and with no fault before it.
    if let Some(hz) = tsc_hz().filter(|_| cfg!(target_arch = "x86_64")) {
        for (name, kind) in [
            ("sort_alone", None),
            ("sort_after_divz", Some(TrapKind::DivideByZero)),
            ("sort_after_ud2", Some(TrapKind::Ud2)),
        ] {
            group.bench_function(name, |b| {
                let handlers = CTrapHandlers::install(true).expect("C handlers install");
                b.iter_custom(|iterations| {
                    let mut ticks = 0;
                    for _ in 0..iterations {
                        if let Some(kind) = kind {
                            black_box(handlers.trap(black_box(kind), false));
                        }
                        let start = c::tsc();
                        black_box(sort(black_box(7)));
                        ticks += c::tsc() - start;
                    }
                    Duration::from_secs_f64(ticks as f64 / hz)
                });
                drop(handlers);
            });
        }
    }
    assert!(matches!(bench.trap(true), Err(CallError::Trap { .. })));
    group.finish();
}

bench_main!(trap, 30);
