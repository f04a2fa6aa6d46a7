//! A Rust panic thrown `d` frames down and caught by `catch_unwind`, and
//! the same iteration without the panic (its baseline).

use std::hint::black_box;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// The panic payload (a type of our own, so the hook can recognise it).
pub struct BenchPanic(pub i64);

#[inline(never)]
fn panic_rec(depth: u64, payload: i64, panics: bool) -> i64 {
    if black_box(depth) <= 1 {
        if black_box(panics) {
            panic::panic_any(BenchPanic(payload));
        }
        return payload;
    }
    // Work after the call on an opaque value: every frame stays.
    black_box(panic_rec(black_box(depth - 1), payload, panics)) + 1
}

/// Keep the panic hook quiet for [`BenchPanic`] (other panics still print):
/// the default hook would write a message to stderr on every iteration. The
/// hook is still called — it is part of what a panic costs.
pub fn quiet_bench_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<BenchPanic>() {
                previous(info);
            }
        }));
    });
}

/// Panic in the innermost of `depth` Rust frames, catch at the top; returns
/// the payload.
pub fn panic_catch(depth: u64, payload: i64) -> i64 {
    catch(depth, payload, true)
}

/// [`panic_catch`]'s iteration without the panic: `catch_unwind`, the
/// same `depth` frames down and back; returns `payload + depth - 1`.
pub fn no_panic(depth: u64, payload: i64) -> i64 {
    catch(depth, payload, false)
}

fn catch(depth: u64, payload: i64, panics: bool) -> i64 {
    match panic::catch_unwind(AssertUnwindSafe(|| {
        panic_rec(depth.max(1), payload, panics)
    })) {
        Ok(v) => v,
        Err(e) => match e.downcast::<BenchPanic>() {
            Ok(p) => p.0,
            Err(other) => panic::resume_unwind(other),
        },
    }
}
