//! Helpers shared by the integration tests of the `clif-exn` binary:
//! running it, scratch files, and checking what it printed.

// Each test binary uses the helpers it needs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `clif-exn ARGS...`, with `CRANELIFT_TEST_BLESS` unset, for the caller
/// to add to and run.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clif-exn"));
    command.args(args).env_remove("CRANELIFT_TEST_BLESS");
    command
}

/// `clif-exn test FLAGS PATHS...` (see [`command`]).
pub fn test_command(flags: &[&str], paths: &[&Path]) -> Command {
    let mut command = command(&["test"]);
    command.args(flags).args(paths);
    command
}

/// Check that `clif-exn ARGS...` exits with `code` for each `(args, code)`
/// of `cases`; the output of the last one.
pub fn assert_exit_codes(cases: &[(&[&str], i32)]) -> Output {
    let mut last = None;
    for (args, code) in cases {
        let o = command(args).output().expect("clif-exn runs");
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {o:?}");
        last = Some(o);
    }
    last.expect("at least one case")
}

/// `clif-exn test FLAGS PATHS...` (see [`test_command`]), run to its end.
pub fn clif_exn_test(flags: &[&str], paths: &[&Path]) -> Output {
    test_command(flags, paths).output().expect("clif-exn runs")
}

/// Standard output, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard output of `o`, which must have exited with `code` and printed
/// every string of `wanted` (the output is shown when not).
pub fn output_of(o: &Output, code: i32, wanted: &[&str]) -> String {
    let out = stdout(o);
    assert_eq!(o.status.code(), Some(code), "{out}{}", stderr(o));
    assert_contains(&out, wanted);
    out
}

/// Standard error, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A file `name` holding `text`, in this process's scratch directory for
/// the test binary `suite`.
pub fn scratch(suite: &str, name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clif-exn-{suite}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Panic, showing `out`, unless it contains every string of `wanted`.
pub fn assert_contains(out: &str, wanted: &[&str]) {
    for want in wanted {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
}
