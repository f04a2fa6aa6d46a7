//! Host → JIT entry overhead: a call of a function that returns at once.

#[macro_use]
mod common;

use std::hint::black_box;

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn_benchmarks::c;
use cranelift_exn_benchmarks::jit::JitBench;
use criterion::Criterion;

fn entry(c: &mut Criterion) {
    let mut bench = JitBench::new().expect("the benchmark module loads");
    let ret = bench.ret_fn();
    let mut group = c.benchmark_group("entry");
    group.bench_function("plain_indirect_call", |b| {
        b.iter(|| black_box(ret)(black_box(5)))
    });
    group.bench_function("bare_wrapper", |b| {
        b.iter(|| bench.ret_via_bare_wrapper(black_box(5)))
    });
    group.bench_function("our_trampoline", |b| {
        b.iter(|| bench.ret_via_trampoline(black_box(5)))
    });
    group.bench_function("our_trampoline_tail_callee", |b| {
        b.iter(|| bench.ret_tail_via_trampoline(black_box(5)))
    });
    group.bench_function("c_setjmp_entry", |b| {
        b.iter(|| c::setjmp_entry(black_box(ret), black_box(5)))
    });
    group.bench_function("c_sigsetjmp_entry", |b| {
        b.iter(|| c::sigsetjmp_entry(black_box(ret), black_box(5)))
    });
    group.bench_function("our_call_raw", |b| {
        b.iter(|| bench.ret_value_via_call_raw(black_box(5)))
    });
    let typed = bench
        .module()
        .typed::<i64, i64>("ret")
        .expect("%ret is (i64) -> i64");
    assert_eq!(typed.call(5), Ok(5));
    // The result matched into a value, as `our_call_raw` does: handing
    // criterion the whole `Result` (88 bytes) costs a copy of it on top.
    group.bench_function("our_typed_call", |b| {
        b.iter(|| typed.call(black_box(5)).unwrap_or(-1))
    });
    let module = bench.module();
    group.bench_function("our_module_call", |b| {
        b.iter(|| module.call("ret", &[DataValue::I64(black_box(5))]))
    });
    group.finish();
}

bench_main!(entry, 30);
