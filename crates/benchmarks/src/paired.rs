//! Measuring in alternation (the `*_paired` binaries): rounds of one batch
//! of each mechanism in turn, so that load from other work on the machine
//! hits every column of a round alike; then statistics over the rounds.

use std::time::Instant;

/// The number of rounds a `*_paired` binary's `[ROUNDS]` argument asks
/// for, `default` without one: at least 3, so that the quartiles differ
/// from the median.
pub fn rounds(arg: Option<String>, default: usize) -> Result<usize, String> {
    match arg {
        Some(arg) => arg
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 2)
            .ok_or_else(|| format!("ROUNDS must be a number above 2, not {arg:?}")),
        None => Ok(default),
    }
}

/// Nanoseconds per call of `f` over a batch of `n` calls.
pub fn batch(n: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

/// The median of `values` (not empty), and the spread between their first
/// and third quartiles as a fraction of it.
pub fn median_and_spread(values: &[f64]) -> (f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let quartile = |q: usize| sorted[(sorted.len() - 1) * q / 4];
    let median = quartile(2);
    (median, (quartile(3) - quartile(1)) / median)
}

/// The per-round ratios of `a` to `b`.
pub fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x / y).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_spreads_and_ratios() {
        assert_eq!(
            median_and_spread(&[4.0, 1.0, 2.0, 3.0, 5.0]),
            (3.0, 2.0 / 3.0)
        );
        assert_eq!(median_and_spread(&[7.0]), (7.0, 0.0));
        assert_eq!(ratios(&[2.0, 9.0], &[1.0, 3.0]), [2.0, 3.0]);
    }

    #[test]
    fn rounds_default_and_refuse_what_gives_no_quartiles() {
        assert_eq!(rounds(None, 60), Ok(60));
        assert_eq!(rounds(Some("3".into()), 60), Ok(3));
        for bad in ["2", "0", "-1", "many"] {
            let err = rounds(Some(bad.into()), 60).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn a_batch_times_each_call() {
        let mut calls = 0;
        let per_call = batch(1000, || {
            calls += 1;
            std::thread::sleep(std::time::Duration::from_micros(10));
        });
        assert_eq!(calls, 1000);
        assert!(per_call >= 10_000.0, "{per_call} ns per 10 µs sleep");
    }
}
