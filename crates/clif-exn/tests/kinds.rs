//! `clif-exn test` on the compile-side kinds — `compile` (filecheck,
//! `precise-output`, `expect-fail`) and `optimize` — with bless, the
//! verifier run before them, parser warnings, unsupported kinds and flags.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_contains, output_of, repo, stdout, test_command};

/// `clif-exn test FLAGS FILES...`, with `CRANELIFT_TEST_BLESS=1` when
/// `bless`.
fn clif_exn(flags: &[&str], files: &[&Path], bless: bool) -> Output {
    let mut command = test_command(flags, files);
    if bless {
        command.env("CRANELIFT_TEST_BLESS", "1");
    }
    command.output().expect("clif-exn runs")
}

fn scratch(name: &str, text: &str) -> PathBuf {
    common::scratch("kinds", name, text)
}

const ADD: &str = "function %add(i64, i64) -> i64 {\nblock0(v0: i64, v1: i64):\n    \
                   v2 = iadd v0, v1\n    return v2\n}\n";

/// A precise-output file for `target`, its expectation written by bless.
fn blessed(name: &str, target: &str) -> (PathBuf, String) {
    let path = scratch(
        name,
        &format!("test compile precise-output\ntarget {target}\n\n{ADD}"),
    );
    let o = clif_exn(&[], &[&path], true);
    assert!(o.status.success(), "{}", stdout(&o));
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

#[test]
fn precise_output_is_vcode_then_disassembly_and_passes_once_blessed() {
    let (path, text) = blessed("precise-x64.clif", "x86_64");
    // Upstream's layout: `; VCode:` ... `;` `; Disassembled:` with capstone
    // block labels and offsets.
    assert!(
        text.contains("}\n\n; VCode:\n;   pushq %rbp\n")
            && text.contains(";   leaq (%rdi, %rsi), %rax\n")
            && text.contains(";\n; Disassembled:\n; block0: ; offset 0x0\n;   pushq %rbp\n"),
        "{text}"
    );
    assert!(text.ends_with(";   retq\n\n"), "{text:?}");
    let o = clif_exn(&[], &[&path], false);
    output_of(
        &o,
        0,
        &[
            "1 files: 1 passed, 0 failed, 0 skipped",
            "compile x86_64 1 passed",
        ],
    );
}

#[test]
fn a_wrong_precise_output_line_fails_with_a_diff_and_its_line() {
    let (path, text) = blessed("precise-wrong.clif", "aarch64");
    let lines: Vec<&str> = text.lines().collect();
    let wrong = lines
        .iter()
        .position(|l| l.starts_with(";   add "))
        .expect("an add in the expectation");
    let corrupted = text.replacen(lines[wrong], ";   sub x0, x0, x1", 1);
    std::fs::write(&path, &corrupted).unwrap();
    let o = clif_exn(&[], &[&path], false);
    let out = output_of(&o, 1, &[]);
    let shown = path.display();
    assert!(
        out.contains(&format!("FAIL {shown} compile [aarch64]"))
            && out.contains(&format!("first difference at {shown}:{}", wrong + 1)),
        "{out}"
    );
    assert!(
        out.contains("--- expected\n")
            && out.contains("-  sub x0, x0, x1\n")
            && out.contains(&format!("+{}\n", &lines[wrong][2..])),
        "{out}"
    );
    assert_contains(&out, &["CRANELIFT_TEST_BLESS=1"]);
    // The file is left alone without bless.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), corrupted);
}

/// Bless restores a corrupted expectation byte for byte, in a file with
/// several functions (later ones shift as earlier ones change length).
/// Write `corrupted` (which differs from `expected`) to `path`: the file
/// fails, and passes once blessed, which restores `expected`.
fn assert_bless_restores(path: &Path, corrupted: &str, expected: &str) {
    assert_ne!(corrupted, expected);
    std::fs::write(path, corrupted).unwrap();
    assert_eq!(clif_exn(&[], &[path], false).status.code(), Some(1));
    assert!(clif_exn(&[], &[path], true).status.success());
    assert_eq!(std::fs::read_to_string(path).unwrap(), expected);
}

#[test]
fn bless_round_trip_restores_the_file() {
    let original_text = format!(
        "test compile precise-output\nset opt_level=speed\ntarget s390x\n\n\
         {ADD}\nfunction %neg(i32) -> i32 {{\nblock0(v0: i32):\n    v1 = ineg v0\n    return v1\n}}\n"
    );
    let path = scratch("bless.clif", &original_text);
    assert!(clif_exn(&[], &[&path], true).status.success());
    let blessed = std::fs::read_to_string(&path).unwrap();
    assert!(
        blessed.contains("; Disassembled:") && blessed.contains(";   lcr"),
        "{blessed}"
    );
    // Drop a line of the first expectation and corrupt one of the second.
    let corrupted = blessed
        .replacen(";   agr", ";   agrX", 1)
        .replacen(";   br %r14\n", "", 1)
        .replacen(";   lcr", ";   lcrX", 1);
    assert_bless_restores(&path, &corrupted, &blessed);
}

/// A precise-output file with several targets has one expectation per
/// function; bless refuses to rewrite it twice (upstream asserts).
#[test]
fn bless_of_several_targets_is_refused() {
    let path = scratch(
        "bless-two.clif",
        &format!("test compile precise-output\ntarget x86_64\ntarget s390x\n\n{ADD}"),
    );
    let o = clif_exn(&[], &[&path], true);
    output_of(&o, 1, &["cannot bless the function on line 5 again"]);
}

/// The same round trip on one of the project's precise-output files (many
/// functions, `try_call` with handlers, VCode and disassembly).
#[test]
fn bless_round_trip_on_a_project_file() {
    let file = repo().join("filetests/isa/x64/try-call-conventions.clif");
    let original = std::fs::read_to_string(&file).unwrap();
    let path = scratch("try-call-conventions.clif", &original);
    assert!(clif_exn(&[], &[&path], false).status.success());
    let corrupted = original.replacen(";   callq ", ";   callq *%rbx ; ", 1);
    assert_bless_restores(&path, &corrupted, &original);
}

#[test]
fn filecheck_directives_pass_and_a_mismatch_fails() {
    let good = scratch(
        "check-good.clif",
        &format!(
            "test compile\ntarget x86_64\n\n{ADD}; check: block0:\n; nextln: leaq\n\
             ; sameln: %rax\n; not: imul\n; regex: R=%r[a-z]+\n; check: movq $R, %rsp\n"
        ),
    );
    let o = clif_exn(&[], &[&good], false);
    assert!(o.status.success(), "{}", stdout(&o));
    let bad = scratch(
        "check-bad.clif",
        &format!("test compile\ntarget x86_64\n\n{ADD}; check: imulq\n"),
    );
    let o = clif_exn(&[], &[&bad], false);
    let out = output_of(&o, 1, &[]);
    assert!(
        out.contains(&format!("{}:4: filecheck failed", bad.display())) && out.contains("imulq"),
        "{out}"
    );
}

#[test]
fn expect_fail_passes_only_when_compilation_fails() {
    let fails = scratch(
        "expect-fail.clif",
        "test compile expect-fail\nset enable_llvm_abi_extensions=true\ntarget x86_64\n\n\
         function %f(i64) -> i32 {\nblock0(v0: i64):\n    v1 = load.i32 big v0\n    return v1\n}\n",
    );
    let o = clif_exn(&[], &[&fails], false);
    assert!(o.status.success(), "{}", stdout(&o));
    let compiles = scratch(
        "expect-fail-compiles.clif",
        &format!("test compile expect-fail\ntarget x86_64\n\n{ADD}"),
    );
    let o = clif_exn(&[], &[&compiles], false);
    output_of(&o, 1, &["expects an error"]);
}

#[test]
fn optimize_prints_the_optimized_function() {
    let path = scratch(
        "optimize.clif",
        "test optimize precise-output\nset opt_level=speed\ntarget x86_64\n\n\
         function %f(i32) -> i32 {\nblock0(v0: i32):\n    v1 = iconst.i32 0\n    \
         v2 = iadd v0, v1\n    return v2\n}\n",
    );
    assert!(clif_exn(&[], &[&path], true).status.success());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.ends_with(
            "; function %f(i32) -> i32 fast {\n; block0(v0: i32):\n;     return v0\n; }\n\n"
        ),
        "{text:?}"
    );
    assert!(clif_exn(&[], &[&path], false).status.success());
    let wrong = text.replace(";     return v0", ";     return v1");
    std::fs::write(&path, wrong).unwrap();
    assert_eq!(clif_exn(&[], &[&path], false).status.code(), Some(1));

    let check = scratch(
        "optimize-check.clif",
        "test optimize\nset opt_level=speed\ntarget aarch64\n\n\
         function %f(i32) -> i32 {\nblock0(v0: i32):\n    v1 = iconst.i32 2\n    \
         v2 = imul v0, v1\n    return v2\n}\n; check: iadd v0, v0\n; not: imul\n",
    );
    let o = clif_exn(&[], &[&check], false);
    assert!(o.status.success(), "{}", stdout(&o));
}

#[test]
fn the_verifier_runs_before_compile() {
    let path = scratch(
        "unverified.clif",
        "test compile\ntarget x86_64\n\nfunction %f(i32) -> i64 {\nblock0(v0: i32):\n    \
         return v0\n}\n",
    );
    let o = clif_exn(&[], &[&path], false);
    let out = output_of(&o, 1, &[]);
    assert!(
        out.contains("fails the verifier") && out.contains("return v0"),
        "{out}"
    );
}

#[test]
fn unsupported_kinds_and_targets_are_counted_as_skipped() {
    let kind = scratch(
        "unwind.clif",
        &format!("test unwind\ntest compile\ntarget x86_64\n\n{ADD}"),
    );
    let warning = scratch("i686.clif", &format!("test compile\ntarget i686\n\n{ADD}"));
    let o = clif_exn(&[], &[&kind, &warning], false);
    let out = output_of(&o, 0, &["2 files: 1 passed, 0 failed, 1 skipped"]);
    assert!(
        out.contains("1 × `test unwind` is not supported by this runner")
            && out.contains("1 × file skipped: unsupported target 'i686'"),
        "{out}"
    );
    // A kind upstream does not know either fails, as upstream's runner fails.
    let typo = scratch("licm.clif", &format!("test licm\ntarget x86_64\n\n{ADD}"));
    let o = clif_exn(&[], &[&typo], false);
    output_of(&o, 1, &["unknown test command 'licm'"]);
}

/// A run test whose target flag the emulated CPU lacks is skipped for that
/// target with the reason (with unicorn only: `--emulator auto` would run it
/// in QEMU, see `tests/emulators.rs`); `--no-run` skips run tests
/// altogether.
#[test]
fn run_targets_the_emulator_lacks_are_skipped_with_the_reason() {
    let path = scratch(
        "has-v.clif",
        &format!("test run\ntarget riscv64 has_v\ntarget riscv64\n\n{ADD}; run: %add(1, 2) == 3\n"),
    );
    let o = clif_exn(&["-v", "--emulator", "unicorn"], &[&path], false);
    let out = output_of(&o, 0, &[]);
    assert!(
        out.contains("SKIP [riscv64 has_v]: ") && out.contains("has_v"),
        "{out}"
    );
    assert_contains(&out, &["riscv64 emulated 1 passed, 0 failed, 1 skipped"]);
    let o = clif_exn(&["--no-run"], &[&path], false);
    output_of(&o, 0, &["1 × run tests are not executed (--no-run)"]);
}

#[test]
fn verbose_prints_each_file_with_its_time() {
    let path = scratch(
        "verbose.clif",
        &format!("test compile\ntarget s390x\n\n{ADD}"),
    );
    let o = clif_exn(&["-v"], &[&path], false);
    let out = output_of(&o, 0, &[]);
    let line = out
        .lines()
        .find(|l| l.starts_with(&path.display().to_string()))
        .expect("a line for the file");
    assert!(line.ends_with("s)") && line.contains(" (0."), "{line}");
    assert_contains(&out, &["  compile [s390x]: passed"]);
}

/// The project's compile tests for every ISA pass (their run tests are
/// skipped with `--no-run`); upstream's corpus is checked by
/// `scripts/corpus`.
#[test]
fn project_isa_compile_tests_pass() {
    let o = clif_exn(&["--no-run"], &[&repo().join("filetests/isa")], false);
    let out = output_of(&o, 0, &[]);
    for arch in ["x86_64", "aarch64", "riscv64", "s390x"] {
        assert_contains(
            &out,
            &[&format!("compile {arch:7} 2 passed, 0 failed, 0 skipped")],
        );
    }
}
