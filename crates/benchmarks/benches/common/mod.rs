//! What every benchmark binary shares: criterion's settings and `main`.

use std::time::Duration;

use criterion::Criterion;

/// Criterion's settings for this crate's benchmarks: `samples` samples after
/// half a second of warm-up, two seconds of measurement, no plots (the
/// report draws its own).
pub fn config(samples: usize) -> Criterion {
    Criterion::default()
        .sample_size(samples)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

/// `main` for a benchmark binary that runs `$target` with
/// [`config`]`($samples)`, measuring for `$measurement` instead of two
/// seconds when given.
macro_rules! bench_main {
    ($target:ident, $samples:expr) => {
        criterion::criterion_group! {
            name = benches;
            config = common::config($samples);
            targets = $target
        }
        criterion::criterion_main!(benches);
    };
    ($target:ident, $samples:expr, $measurement:expr) => {
        criterion::criterion_group! {
            name = benches;
            config = common::config($samples).measurement_time($measurement);
            targets = $target
        }
        criterion::criterion_main!(benches);
    };
}
