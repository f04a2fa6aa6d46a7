//! Incremental definition: one function defined (parsed and compiled) and
//! finalized into a native module that already holds `n` functions, as a
//! runtime that compiles lazily does for each function it first calls. The
//! module grows by one function per iteration (by about 15,000 over a
//! run); a finalize whose cost does not depend on the module's size takes
//! the same time at every `n`.

#[macro_use]
mod common;

use std::hint::black_box;
use std::time::Instant;

use cranelift_exn::JitModule;
use cranelift_exn::compile::default_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::native::NativeMachine;
use criterion::Criterion;

/// Module sizes measured (functions before the first measured one).
const SIZES: [usize; 2] = [1_000, 100_000];

/// CLIF of `%f{i}`, which adds `i` to its argument.
fn function(i: usize) -> String {
    format!(
        "function %f{i}(i64) -> i64 {{\nblock0(v0: i64):\n    v1 = iconst.i64 {i}\n    \
         v2 = iadd v0, v1\n    return v2\n}}\n"
    )
}

fn finalize(c: &mut Criterion) {
    let Some(arch) = Arch::host() else { return };
    let isa = default_isa(arch).expect("the host's ISA");
    let mut group = c.benchmark_group("finalize");
    for n in SIZES {
        let machine = NativeMachine::new().expect("a native machine");
        let mut module = JitModule::with_machine(machine, isa.as_ref()).expect("a module");
        // The first `n` at once: one finalize.
        let text: String = (0..n).map(function).collect();
        module.define_clif(&text).expect("the functions compile");
        module.finalize().expect("the module loads");
        let mut next = n;
        group.bench_function(format!("one_function_into_{n}"), |b| {
            b.iter_custom(|iterations| {
                let start = Instant::now();
                for _ in 0..iterations {
                    module.define_clif(&function(next)).expect("compiles");
                    module.finalize().expect("loads");
                    next += 1;
                }
                start.elapsed()
            })
        });
        // Each function is there and runs.
        let last = format!("f{}", next - 1);
        let typed = module.typed::<i64, i64>(&last).expect("defined");
        assert_eq!(typed.call(black_box(1)), Ok(next as i64));
    }
    group.finish();
}

// One second of measurement: each iteration leaves a function (and a page
// of code) behind.
bench_main!(finalize, 10, std::time::Duration::from_secs(1));
