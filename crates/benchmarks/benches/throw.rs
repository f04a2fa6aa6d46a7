//! Throw → catch latency against call depth, for every mechanism (see
//! `cranelift_exn_benchmarks::jit::Thrower` and the C/C++/Rust chains).

#[macro_use]
mod common;

use std::hint::black_box;

use cranelift_exn_benchmarks::jit::{JitBench, Thrower};
use cranelift_exn_benchmarks::{DEPTHS, PAYLOAD, c, rust_panic};
use criterion::{BenchmarkId, Criterion};

/// The benchmark id of a JIT mechanism (the report reads these).
fn id(thrower: Thrower) -> &'static str {
    match thrower {
        Thrower::NoThrow => "jit_calls_no_throw",
        Thrower::StackWalk => "a_stack_walk",
        Thrower::StackWalkFromHost => "a_stack_walk_from_host",
        Thrower::ToEntry => "b_to_entry",
        Thrower::ToEntryFromHost => "b_to_entry_from_host",
        Thrower::Trap => "b_trap_to_entry",
        Thrower::Wasmtime => "c_wasmtime_unwinder",
    }
}

fn throw(c: &mut Criterion) {
    rust_panic::quiet_bench_panics();
    let mut bench = JitBench::new().expect("the benchmark module loads");
    let mut group = c.benchmark_group("throw");
    for depth in DEPTHS {
        for thrower in Thrower::ALL {
            // Each mechanism does what it claims before it is timed.
            let outcome = bench.run(thrower, depth);
            match thrower {
                Thrower::NoThrow => assert_eq!(outcome, Ok(depth as i64 - 2)),
                Thrower::ToEntry | Thrower::ToEntryFromHost | Thrower::Trap => {
                    assert!(outcome.is_err())
                }
                _ => assert_eq!(outcome, Ok(PAYLOAD), "{thrower:?}"),
            }
            group.bench_with_input(BenchmarkId::new(id(thrower), depth), &depth, |b, &d| {
                b.iter(|| bench.run_value(thrower, black_box(d)))
            });
        }
        group.bench_with_input(BenchmarkId::new("d_rust_panic", depth), &depth, |b, &d| {
            b.iter(|| rust_panic::panic_catch(black_box(d), PAYLOAD))
        });
        assert_eq!(
            rust_panic::no_panic(depth, PAYLOAD),
            PAYLOAD + depth as i64 - 1
        );
        group.bench_with_input(
            BenchmarkId::new("rust_calls_no_panic", depth),
            &depth,
            |b, &d| b.iter(|| rust_panic::no_panic(black_box(d), PAYLOAD)),
        );
        group.bench_with_input(BenchmarkId::new("e_cxx_throw", depth), &depth, |b, &d| {
            b.iter(|| c::cxx_throw(black_box(d), PAYLOAD))
        });
        group.bench_with_input(BenchmarkId::new("f_longjmp", depth), &depth, |b, &d| {
            b.iter(|| c::longjmp(black_box(d), PAYLOAD))
        });
        assert_eq!(bench.longjmp_over_jit(depth, PAYLOAD), PAYLOAD);
        group.bench_with_input(
            BenchmarkId::new("f_longjmp_over_jit", depth),
            &depth,
            |b, &d| b.iter(|| bench.longjmp_over_jit(black_box(d), PAYLOAD)),
        );
        group.bench_with_input(
            BenchmarkId::new("c_calls_no_throw", depth),
            &depth,
            |b, &d| b.iter(|| c::c_calls(black_box(d))),
        );
    }
    group.finish();
}

bench_main!(throw, 20);
