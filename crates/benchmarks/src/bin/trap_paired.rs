//! Trap delivery against C, measured in alternation: rounds of a batch of
//! JIT traps, then the same batch under each C way (`sigsetjmp(env, 1)`,
//! SA_NODEFER + `sigsetjmp(env, 0)`, rewrite and return), so that load
//! from other work on the machine hits every column alike. Prints the
//! median per trap of each column and the median of the per-round ratios
//! ours / `sigsetjmp(env, 1)`.
//!
//! ```text
//! cargo run --release -p cranelift-exn-benchmarks --bin trap_paired [ROUNDS]
//! ```

use std::hint::black_box;
use std::io::Write as _;

use cranelift_exn_benchmarks::c::{CReturningTrapHandlers, CTrapHandlers, TrapKind};
use cranelift_exn_benchmarks::jit::JitBench;
use cranelift_exn_benchmarks::paired::{batch, median_and_spread, ratios, rounds};

/// Traps per batch.
const BATCH: u32 = 500;

fn main() -> Result<(), String> {
    let rounds = rounds(std::env::args().nth(1), 40)?;
    let mut bench = JitBench::new().map_err(|e| e.to_string())?;
    for (divide, kind) in [(true, TrapKind::DivideByZero), (false, TrapKind::Ud2)] {
        let mut columns: [Vec<f64>; 4] = Default::default();
        for _ in 0..rounds {
            columns[0].push(batch(BATCH, || {
                let _ = black_box(bench.trap(black_box(divide)));
            }));
            for (column, nodefer) in [(1, false), (2, true)] {
                let handlers = CTrapHandlers::install(nodefer)?;
                columns[column].push(batch(BATCH, || {
                    black_box(handlers.trap(black_box(kind), !nodefer));
                }));
            }
            let handlers = CReturningTrapHandlers::install()?;
            columns[3].push(batch(BATCH, || {
                black_box(handlers.trap(black_box(kind)));
            }));
        }
        let (ratio, _) = median_and_spread(&ratios(&columns[0], &columns[1]));
        let [ours, c1, c0, ret] = columns.map(|c| median_and_spread(&c).0);
        writeln!(
            std::io::stdout().lock(),
            "{kind:?}: ours {ours:.0} ns, C sigsetjmp(env, 1) {c1:.0} ns, \
             C SA_NODEFER + sigsetjmp(env, 0) {c0:.0} ns, C rewrite + return {ret:.0} ns; \
             ours / sigsetjmp(env, 1): {ratio:.3} (median of {rounds} paired rounds)"
        )
        .map_err(|e| format!("writing the results: {e}"))?;
    }
    Ok(())
}
