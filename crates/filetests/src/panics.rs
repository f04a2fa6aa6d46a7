//! Panics caught while a file runs, kept for the file's report.
//!
//! The runner catches Cranelift's panics (and the interpreter's) and fails
//! the test with the panic's message; the default panic hook would also
//! print them to standard error as they happen, out of order with the
//! results and without saying which file they belong to. A process that
//! calls [`record_panics`] (the `clif-exn test` workers) records each
//! panic's location and message instead, with a backtrace when
//! `RUST_BACKTRACE` asks for one, and [`runone::run_part`] puts those of a
//! file into its [`runone::FileReport::panics`].
//!
//! [`runone::run_part`]: crate::runone::run_part
//! [`runone::FileReport::panics`]: crate::runone::FileReport::panics

use std::backtrace::{Backtrace, BacktraceStatus};
use std::sync::{Mutex, Once};

/// Panics recorded since the last [`take`], from any thread.
static RECORDED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Replace this process's panic hook with one that records each panic
/// (see [`take`]) and prints nothing. Idempotent.
pub fn record_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", short_path(l.file()), l.line(), l.column()))
                .unwrap_or_else(|| "an unknown location".into());
            let message = cranelift_exn::error::panic_message(info.payload());
            let mut record = format!("{location}: {message}");
            // `capture` honours RUST_BACKTRACE (and RUST_LIB_BACKTRACE).
            let backtrace = Backtrace::capture();
            if backtrace.status() == BacktraceStatus::Captured {
                let full = backtrace.to_string();
                let shown = match std::env::var("RUST_BACKTRACE").as_deref() {
                    Ok("full") => full,
                    _ => short_backtrace(&full),
                };
                record += &format!("\n{shown}");
            }
            recorded().push(record);
        }));
    });
}

/// The panics recorded since the last call (oldest first): each its
/// location, `: `, its message, and any backtrace on the lines after.
pub fn take() -> Vec<String> {
    std::mem::take(&mut *recorded())
}

fn recorded() -> std::sync::MutexGuard<'static, Vec<String>> {
    // A panic while the list is locked cannot happen (nothing in the
    // critical sections panics), but a poisoned lock holds a valid list.
    RECORDED.lock().unwrap_or_else(|e| e.into_inner())
}

/// The frames of a backtrace's text between the panic machinery and the
/// thread's start, as the default hook shows them without
/// `RUST_BACKTRACE=full` (the whole text if the markers are missing).
fn short_backtrace(full: &str) -> String {
    // A frame is its `N: symbol` line and the `at file:line` lines after.
    let mut frames: Vec<Vec<&str>> = Vec::new();
    for line in full.lines() {
        let head = line.trim_start();
        let numbered = head
            .split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        match frames.last_mut() {
            Some(frame) if !numbered => frame.push(line),
            _ => frames.push(vec![line]),
        }
    }
    let marker = |name: &str| frames.iter().position(|f| f[0].contains(name));
    let start = marker("__rust_end_short_backtrace").map_or(0, |i| i + 1);
    let end = marker("__rust_begin_short_backtrace").unwrap_or(frames.len());
    if start >= end {
        return full.to_string();
    }
    frames[start..end]
        .iter()
        .flatten()
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `file` without the directories before a crate's `name-version/`
/// directory in cargo's registry, or before the standard library's
/// `library/` (`/rustc/<commit>/library/...`).
fn short_path(file: &str) -> &str {
    if let Some(i) = file.find("/index.crates.io-") {
        let rest = &file[i + 1..];
        if let Some(j) = rest.find('/') {
            return &rest[j + 1..];
        }
    }
    if file.starts_with("/rustc/")
        && let Some(i) = file.find("/library/")
    {
        return &file[i + 1..];
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_backtraces_keep_the_frames_between_the_markers() {
        let full = "   0: hook\n   1: std::sys::backtrace::__rust_end_short_backtrace\n   \
                    2: core::panicking::panic\n   3: cranelift::f\n             at src/f.rs:3:4\n   \
                    4: std::sys::backtrace::__rust_begin_short_backtrace\n   5: start\n";
        assert_eq!(
            short_backtrace(full),
            "   2: core::panicking::panic\n   3: cranelift::f\n             at src/f.rs:3:4\n"
        );
        let unmarked = "   0: a\n   1: b\n";
        assert_eq!(short_backtrace(unmarked), unmarked);
    }

    #[test]
    fn registry_paths_keep_the_crate_and_its_version() {
        assert_eq!(
            short_path(
                "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/\
                 cranelift-interpreter-0.135.8/src/environment.rs"
            ),
            "cranelift-interpreter-0.135.8/src/environment.rs"
        );
        assert_eq!(
            short_path("/rustc/59807616e1fa/library/core/src/option.rs"),
            "library/core/src/option.rs"
        );
        assert_eq!(
            short_path("crates/filetests/src/run.rs"),
            "crates/filetests/src/run.rs"
        );
    }
}
