//! The `clif-exn test` command end to end: the repository's filetests on
//! all four targets, and how failures and bad input are reported.

mod common;

use std::path::{Path, PathBuf};

use common::{
    assert_contains, assert_exit_codes, clif_exn_test as clif_exn_with, output_of, repo, stdout,
};

fn clif_exn(args: &[&Path]) -> std::process::Output {
    clif_exn_with(&[], args)
}

/// The per-target summary line, e.g. `  s390x    emulated 42 passed, 0 failed, …`.
fn passed_on(out: &str, arch: &str) -> usize {
    out.lines()
        .find(|l| l.trim_start().starts_with(&format!("{arch} ")))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn scratch(name: &str, text: &str) -> PathBuf {
    common::scratch("cli", name, text)
}

#[test]
fn repository_filetests_pass_on_all_four_targets() {
    let o = clif_exn(&[&repo().join("filetests")]);
    let out = output_of(&o, 0, &[]);
    for arch in ["x86_64", "aarch64", "riscv64", "s390x"] {
        assert!(
            passed_on(&out, arch) >= 25,
            "{arch} ran too few lines:\n{out}"
        );
    }
    assert_contains(&out, &[" 0 failed"]);
}

/// The project's own exception run tests (throws across frames, handler
/// selection by tag, `try_call` conventions) pass on every target, and `-v`
/// gives each target's verdict.
#[test]
fn exception_runtests_pass_on_every_target() {
    let runtests = repo().join("filetests/runtests");
    let o = clif_exn_with(
        &["-v"],
        &[
            &runtests.join("throw_tags.clif"),
            &runtests.join("try_call.clif"),
        ],
    );
    let out = output_of(&o, 0, &[]);
    for arch in ["x86_64", "aarch64", "riscv64", "s390x"] {
        assert!(
            passed_on(&out, arch) >= 1,
            "{arch} executed nothing:\n{out}"
        );
        assert_contains(&out, &[&format!("  run [{arch}]: passed (")]);
    }
}

/// A wrong expectation fails on every target, including a file whose only
/// target is emulated.
#[test]
fn a_wrong_expectation_fails_on_each_target() {
    for arch in ["x86_64", "aarch64", "riscv64", "s390x"] {
        let text = format!(
            "test run\ntarget {arch}\n\nfunction %f(i64) -> i64 {{\nblock0(v0: i64):\n    \
             v1 = iconst.i64 2\n    v2 = imul v0, v1\n    return v2\n}}\n\
             ; run: %f(21) == 42\n; run: %f(4) == 9\n"
        );
        let path = scratch(&format!("wrong-{arch}.clif"), &text);
        let o = clif_exn(&[&path]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{arch}: {out}");
        assert_contains(&out, &[&format!("wrong-{arch}.clif:11 [{arch}] %f(4)")]);
        assert!(
            out.contains("expected: == 9") && out.contains("actual:   8"),
            "{out}"
        );
        assert_eq!(passed_on(&out, arch), 1, "{out}");
    }
}

#[test]
fn bad_input_is_reported_with_file_and_line_and_the_next_file_runs() {
    let malformed = scratch(
        "a-malformed.clif",
        "test run\ntarget x86_64\n\nfunction %f() -> i64 {\nblock0:\n    v0 = bogus.i64 1\n    return v0\n}\n",
    );
    // As upstream, a run line calls the function it follows, whatever name
    // it gives (the corpus has stale names that upstream passes).
    let stale = scratch(
        "b-stale-name.clif",
        "test run\ntarget aarch64\n\nfunction %f() -> i64 {\nblock0:\n    v0 = iconst.i64 1\n    return v0\n}\n; run: %g() == 1\n",
    );
    let uncaught = scratch(
        "c-uncaught.clif",
        "test run\ntarget riscv64\n\nfunction %f() -> i64 {\n    \
         fn0 = %__cranelift_throw(i64, i64, i64, i32, i64, i64)\nblock0:\n    \
         v0 = get_frame_pointer.i64\n    v1 = iconst.i32 3\n    v2 = iconst.i64 4\n    \
         call fn0(v0, v0, v0, v1, v2, v2)\n    return v2\n}\n; run: %f() == 4\n",
    );
    let good = scratch(
        "d-good.clif",
        "test run\ntarget s390x\n\nfunction %f() -> i64 {\nblock0:\n    v0 = iconst.i64 5\n    return v0\n}\n; run: %f() == 5\n",
    );
    let o = clif_exn(&[&malformed, &stale, &uncaught, &good]);
    let out = output_of(&o, 1, &["a-malformed.clif:6"]);
    assert!(!out.contains("b-stale-name.clif"), "{out}");
    assert_eq!(passed_on(&out, "aarch64"), 1, "{out}");
    assert!(
        out.contains("c-uncaught.clif:13 [riscv64] %f()")
            && out.contains("uncaught exception tag3"),
        "{out}"
    );
    assert_eq!(passed_on(&out, "s390x"), 1, "{out}");
    assert_contains(&out, &["4 files: 2 passed, 2 failed, 0 skipped"]);
}

/// A block or value number the reader would allocate billions of entities
/// for fails its file at the line (the reader would abort the worker after
/// exhausting memory), and the next file runs.
#[test]
fn huge_entity_numbers_fail_at_their_line() {
    let block = scratch(
        "a-huge-block.clif",
        "test run\ntarget x86_64\n\nfunction %f() -> i64 {\nblock2147483647:\n    v0 = iconst.i64 1\n    return v0\n}\n; run: %f() == 1\n",
    );
    let value = scratch(
        "b-huge-value.clif",
        "test compile\ntarget aarch64\n\nfunction %f(i64) -> i64 {\nblock0(v3000000000: i64):\n    return v3000000000\n}\n",
    );
    let good = scratch(
        "c-good.clif",
        "test run\ntarget x86_64\n\nfunction %f() -> i64 {\nblock0:\n    v0 = iconst.i64 5\n    return v0\n}\n; run: %f() == 5\n",
    );
    let o = clif_exn(&[&block, &value, &good]);
    let out = output_of(
        &o,
        1,
        &[
            "FAIL",
            "a-huge-block.clif:5: block2147483647: block numbers above 99999 are not supported",
            "b-huge-value.clif:5: v3000000000: value numbers above 4194303 are not supported",
            "3 files: 1 passed, 2 failed, 0 skipped",
        ],
    );
    assert!(
        !out.contains("crashed") && !out.contains("timed out"),
        "{out}"
    );
    assert_eq!(passed_on(&out, "x86_64"), 1, "{out}");
}

/// A panic the runner catches (here cranelift-interpreter's on two
/// functions of one name) fails its test with the message, and the file's
/// report says where it happened; nothing is printed to standard error out
/// of order with the results.
#[test]
fn caught_panics_are_reported_with_their_file_not_printed() {
    let path = scratch(
        "same-name.clif",
        "test interpret\n\nfunction %a() -> i64 {\nblock0:\n    v0 = iconst.i64 1\n    return v0\n}\n\n\
         function %a() -> i64 {\nblock0:\n    v0 = iconst.i64 2\n    return v0\n}\n; run: %a() == 2\n",
    );
    let o = clif_exn(&[&path]);
    let out = output_of(
        &o,
        1,
        &[
            "FAIL ",
            "same-name.clif interpret:\n    panic: assertion failed",
            "  panic at cranelift-interpreter-",
            "/src/environment.rs:",
        ],
    );
    let err = common::stderr(&o);
    assert!(!err.contains("panicked"), "{err}\n{out}");
}

#[test]
fn usage_errors_exit_2() {
    assert_exit_codes(&[
        (&[], 2),
        (&["test", "--bogus", "x"], 2),
        (&["test", "--timeout", "0", "x"], 2),
        // A path that does not exist is a failure of that path, not bad
        // usage.
        (&["test", "/nonexistent/dir"], 1),
    ]);
}

/// Target lines the runner cannot build are skipped with a reason, and the
/// results of the others keep their own target's name.
#[test]
fn unsupported_targets_are_skipped_and_do_not_shift_labels() {
    let path = scratch(
        "pulley.clif",
        "test run\ntarget pulley64\ntarget s390x\n\nfunction %f() -> i64 {\nblock0:\n    \
         v0 = iconst.i64 1\n    return v0\n}\n; run: %f() == 2\n",
    );
    let o = clif_exn_with(&["-v"], &[&path]);
    output_of(
        &o,
        1,
        &[
            "pulley.clif:10 [s390x] %f()",
            "SKIP [pulley64]: Cranelift is built without target `pulley64`",
            "run: 0 passed, 1 failed, 1 skipped",
        ],
    );
}

/// `--isa LIST` executes run lines only for targets of those ISAs (the host's
/// included or not); the others are counted as skipped with the reason, and
/// an unknown ISA is a usage error.
#[test]
fn isa_selects_which_targets_run() {
    let file = repo().join("filetests/runtests/throw_tags.clif");
    let all = stdout(&clif_exn(&[&file]));
    let o = clif_exn_with(&["--isa", "riscv64,s390x"], &[&file]);
    let out = output_of(&o, 0, &[]);
    for arch in ["riscv64", "s390x"] {
        assert!(passed_on(&out, arch) > 0, "{out}");
        assert_eq!(passed_on(&out, arch), passed_on(&all, arch), "{out}");
    }
    for arch in ["x86_64", "aarch64"] {
        assert_eq!(passed_on(&out, arch), 0, "{out}");
        assert_contains(&out, &[&format!("skipped: {arch} not selected (--isa)")]);
    }
    let bad = clif_exn_with(&["--isa", "mips"], &[&file]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown ISA `mips`"));
}
