//! Deliberate unwinder bugs (cargo feature `sabotage`), for proving that a
//! test — the fuzzing oracle — notices them. Off unless turned on with
//! [`set_sabotage`]; never compiled into a build without the feature.

use std::sync::atomic::{AtomicU8, Ordering};

/// A deliberate unwinder bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Sabotage {
    /// Select the last matching handler of a call site instead of the first.
    HandlerLookup,
    /// Do not restore callee-saved registers of the frames a throw skips.
    CalleeSavedRestore,
}

impl std::str::FromStr for Sabotage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "handler-lookup" => Ok(Sabotage::HandlerLookup),
            "callee-saves" => Ok(Sabotage::CalleeSavedRestore),
            other => Err(format!(
                "unknown sabotage `{other}` (handler-lookup, callee-saves)"
            )),
        }
    }
}

/// The sabotage in force: 0 none, else `Sabotage as u8 + 1`.
static SABOTAGE: AtomicU8 = AtomicU8::new(0);

/// Turn a deliberate bug on (or off, with `None`) for every throw in this
/// process. Test-only: the `clif-exn` binary sets it from `--sabotage` or
/// `CRANELIFT_EXN_SABOTAGE`; never use it in a runtime.
pub fn set_sabotage(sabotage: Option<Sabotage>) {
    let value = sabotage.map_or(0, |s| s as u8 + 1);
    SABOTAGE.store(value, Ordering::Relaxed);
}

/// Whether `which` is on.
pub(super) fn on(which: Sabotage) -> bool {
    SABOTAGE.load(Ordering::Relaxed) == which as u8 + 1
}
