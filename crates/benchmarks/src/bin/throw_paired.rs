//! The report's throw and entry ratios measured in alternation: rounds of
//! one batch of each mechanism in turn, so that load from other work on the
//! machine (which moves a row by 10–40 % between criterion runs on a shared
//! guest) hits every column of a round alike. Prints, per depth, the median
//! time of each mechanism and the median of the per-round ratios the
//! report's targets use; then the same for the entry paths (the
//! trampoline called directly, for a `system_v` and a `tail` callee).
//!
//! ```text
//! cargo run --release -p cranelift-exn-benchmarks --bin throw_paired [ROUNDS]
//! ```
//!
//! A quick A/B of a change: run it before and after; a ratio that moves by
//! more than its round-to-round spread (also printed) moved.

use std::hint::black_box;
use std::io::Write as _;

use cranelift_exn_benchmarks::jit::{JitBench, Thrower};
use cranelift_exn_benchmarks::paired::{batch, median_and_spread, ratios, rounds};
use cranelift_exn_benchmarks::{DEPTHS, PAYLOAD, c, rust_panic};

/// Per-round ratios of (`a` − `a_base`) to (`b` − `b_base`).
fn added_ratios(columns: &[Vec<f64>], [a, a_base, b, b_base]: [usize; 4]) -> Vec<f64> {
    (0..columns[a].len())
        .map(|r| (columns[a][r] - columns[a_base][r]) / (columns[b][r] - columns[b_base][r]))
        .collect()
}

fn main() -> Result<(), String> {
    let rounds = rounds(std::env::args().nth(1), 60)?;
    rust_panic::quiet_bench_panics();
    let mut bench = JitBench::new().map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| writeln!(out, "{line}").map_err(|e| format!("writing: {e}"));
    say(format!(
        "median of {rounds} rounds, each one batch per mechanism; ±: quartile spread / median"
    ))?;

    const NAMES: [&str; 7] = [
        "(a) stack walk",
        "(b) to the entry",
        "(c) wasmtime",
        "(f') longjmp, same frames",
        "JIT no throw",
        "(d) panic",
        "Rust no panic",
    ];
    for depth in DEPTHS {
        // The same outcomes the criterion benchmark asserts before timing.
        assert_eq!(bench.run_value(Thrower::StackWalk, depth), PAYLOAD);
        assert_eq!(bench.run_value(Thrower::ToEntry, depth), PAYLOAD);
        assert_eq!(bench.run_value(Thrower::Wasmtime, depth), PAYLOAD);
        assert_eq!(bench.longjmp_over_jit(depth, PAYLOAD), PAYLOAD);
        // Batches of about the same length at every depth.
        let n = (20_000 / depth).max(20) as u32;
        let mut columns: Vec<Vec<f64>> = vec![Vec::new(); NAMES.len()];
        for _ in 0..rounds {
            for (column, thrower) in [
                (0, Thrower::StackWalk),
                (1, Thrower::ToEntry),
                (2, Thrower::Wasmtime),
                (4, Thrower::NoThrow),
            ] {
                columns[column].push(batch(n, || {
                    black_box(bench.run_value(thrower, black_box(depth)));
                }));
            }
            columns[3].push(batch(n, || {
                black_box(bench.longjmp_over_jit(black_box(depth), PAYLOAD));
            }));
            columns[5].push(batch(n / 10 + 1, || {
                black_box(rust_panic::panic_catch(black_box(depth), PAYLOAD));
            }));
            columns[6].push(batch(n, || {
                black_box(rust_panic::no_panic(black_box(depth), PAYLOAD));
            }));
        }
        let times: Vec<String> = NAMES
            .iter()
            .zip(&columns)
            .map(|(name, column)| format!("{name} {:.1} ns", median_and_spread(column).0))
            .collect();
        say(format!("d={depth}: {}", times.join(", ")))?;
        for (what, values) in [
            ("(b) / (f')", ratios(&columns[1], &columns[3])),
            ("(a) / (f')", ratios(&columns[0], &columns[3])),
            ("(a) / (c)", ratios(&columns[0], &columns[2])),
            (
                "(panic added) / (walk added)",
                added_ratios(&columns, [5, 6, 0, 4]),
            ),
        ] {
            let (median, spread) = median_and_spread(&values);
            say(format!("  {what}: {median:.3} ±{:.0} %", spread * 100.0))?;
        }
    }

    let ret = bench.ret_fn();
    // The typed handle borrows its module for good: a second instance.
    let typed_bench = JitBench::new().map_err(|e| e.to_string())?;
    let typed = typed_bench
        .module()
        .typed::<i64, i64>("ret")
        .map_err(|e| e.to_string())?;
    assert_eq!(typed.call(5), Ok(5));
    assert_eq!(bench.ret_value_via_call_raw(5), 5);
    assert_eq!(bench.ret_via_trampoline(5), 5);
    assert_eq!(c::setjmp_entry(ret, 5), 5);
    const N: u32 = 20_000;
    assert_eq!(bench.ret_tail_via_trampoline(5), 5);
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); 5];
    for _ in 0..rounds {
        columns[0].push(batch(N, || {
            black_box(c::setjmp_entry(black_box(ret), black_box(5)));
        }));
        columns[1].push(batch(N, || {
            black_box(bench.ret_via_trampoline(black_box(5)));
        }));
        columns[2].push(batch(N, || {
            black_box(bench.ret_value_via_call_raw(black_box(5)));
        }));
        columns[3].push(batch(N, || {
            // Matched into a value, as `ret_value_via_call_raw` does.
            black_box(typed.call(black_box(5)).unwrap_or(-1));
        }));
        columns[4].push(batch(N, || {
            black_box(bench.ret_tail_via_trampoline(black_box(5)));
        }));
    }
    for (what, column) in [
        ("our trampoline / setjmp entry", 1),
        ("our trampoline, a `tail` callee / setjmp entry", 4),
        ("Module::call_raw / setjmp entry", 2),
        ("TypedFunc::call / setjmp entry", 3),
    ] {
        let (median, spread) = median_and_spread(&ratios(&columns[column], &columns[0]));
        say(format!(
            "entry: {what}: {median:.3} ±{:.0} %",
            spread * 100.0
        ))?;
    }
    Ok(())
}
