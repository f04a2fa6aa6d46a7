//! `clif-exn test --emulator unicorn|qemu|auto`: which machine runs a
//! target that is not the host, as the verdict and summary lines show.
//!
//! Targets whose flags unicorn's CPU lacks (RISC-V V and Zfh, also with
//! Zcb, s390x z15) run in a QEMU user-mode process when `qemu-<arch>` is
//! installed (Debian's `qemu-user`, which `scripts/dev` installs); flags
//! neither CPU has are skipped with the reason. The files are written
//! here, from the repository's `filetests/runtests/vectors.clif` and small
//! functions.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_contains, assert_exit_codes, repo, stderr};

/// `clif-exn test -v FLAGS PATH`, with `path_env` as `PATH` when given.
fn clif_exn(flags: &[&str], path: &Path, path_env: Option<&str>) -> (Option<i32>, String) {
    let mut command = common::test_command(&["-v"], &[]);
    command.args(flags).arg(path);
    if let Some(value) = path_env {
        command.env("PATH", value);
    }
    let o: Output = command.output().expect("clif-exn runs");
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.code(), out)
}

fn scratch(name: &str, text: &str) -> PathBuf {
    common::scratch("emulators", name, text)
}

/// The summary line of `arch` on machine `mode`, e.g. `riscv64 qemu 9
/// passed, 0 failed, 0 skipped`, with its spacing collapsed.
fn summary(out: &str, arch: &str, mode: &str) -> Option<String> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .find(|l| l.starts_with(&format!("{arch} {mode} ")))
}

/// Run `clif-exn test` as [`clif_exn`] does, which must succeed and print
/// every string of `wanted`; its output.
fn passes_printing(flags: &[&str], path: &Path, path_env: Option<&str>, wanted: &[&str]) -> String {
    let (code, out) = clif_exn(flags, path, path_env);
    assert_eq!(code, Some(0), "{out}");
    assert_contains(&out, wanted);
    out
}

/// Check the summary lines of `arch` in `out`: for each `(mode, counts)`,
/// the line `arch mode counts` (`counts` such as `1 passed, 0 failed, 0
/// skipped`), or no line for `mode` when `counts` is `None`.
fn assert_summaries(out: &str, arch: &str, expected: &[(&str, Option<&str>)]) {
    for (mode, counts) in expected {
        let want = counts.map(|counts| format!("{arch} {mode} {counts}"));
        assert_eq!(summary(out, arch, mode), want, "{out}");
    }
}

/// The repository's vector run test (arguments, results and values live
/// across a `try_call`, in registers of the V extension) for `riscv64
/// has_v` only, written to `name` (each test writes its own file: tests run
/// in parallel).
fn riscv_vectors(name: &str) -> PathBuf {
    let source = std::fs::read_to_string(repo().join("filetests/runtests/vectors.clif")).unwrap();
    let body: Vec<&str> = source
        .lines()
        .filter(|l| !l.starts_with("target ") && !l.starts_with(";;"))
        .collect();
    assert_eq!(body[0], "test run");
    // Cranelift returns more than one vector on riscv64 only through an
    // implicit return area.
    let text = format!(
        "test run\nset enable_multi_ret_implicit_sret\ntarget riscv64 has_v\n{}\n",
        body[1..].join("\n")
    );
    scratch(name, &text)
}

/// How many run lines the vector file has.
fn run_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("; run:"))
        .count()
}

/// Half-precision arithmetic (`has_zfh`) and a plain target of the same
/// file, which unicorn runs.
const HALF: &str = "test run\n\
    target riscv64 has_zfh has_zfhmin\n\
    target riscv64\n\
    \n\
    function %g(i64) -> i64 {\n\
    block0(v0: i64):\n\
    \x20   v1 = iconst.i64 1\n\
    \x20   v2 = iadd v0, v1\n\
    \x20   return v2\n\
    }\n\
    ; run: %g(41) == 42\n";

const HALF_ZFH: &str = "test run\n\
    target riscv64 has_zfh has_zfhmin\n\
    \n\
    function %h(f16, f16) -> f16 {\n\
    block0(v0: f16, v1: f16):\n\
    \x20   v2 = fadd v0, v1\n\
    \x20   return v2\n\
    }\n\
    ; run: %h(0x1.0p0, 0x1.8p1) == 0x1.0p2\n\
    ; run: %h(-0x1.0p0, 0x1.0p0) == 0x0.0p0\n";

fn qemu_installed(arch: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join(format!("qemu-{arch}")).is_file())
    })
}

/// These tests show what QEMU runs: it must be installed, as
/// `crates/qemu`'s tests need it too.
macro_rules! require_qemu {
    ($arch:expr) => {
        assert!(
            qemu_installed($arch),
            "qemu-{} is not on PATH: install qemu-user (scripts/dev does)",
            $arch
        );
    };
}

#[test]
fn auto_runs_vector_lines_on_qemu_and_says_so() {
    require_qemu!("riscv64");
    let path = riscv_vectors("vectors-rvv-1.clif");
    let lines = run_lines(&path);
    assert!(lines >= 5, "{lines}");
    let passed = format!("run [riscv64 has_v]: passed ({lines} run lines, qemu)");
    let out = passes_printing(&[], &path, None, &[&passed]);
    let counts = format!("{lines} passed, 0 failed, 0 skipped");
    assert_summaries(
        &out,
        "riscv64",
        &[("qemu", Some(&counts)), ("emulated", None)],
    );
}

#[test]
fn auto_keeps_unicorn_for_what_it_runs_and_takes_qemu_for_zfh() {
    require_qemu!("riscv64");
    let path = scratch("half.clif", HALF);
    let out = passes_printing(
        &["--emulator", "auto"],
        &path,
        None,
        &[
            "run [riscv64 has_zfh has_zfhmin]: passed (1 run line, qemu)",
            "run [riscv64]: passed (1 run line, emulated)",
        ],
    );
    let one = Some("1 passed, 0 failed, 0 skipped");
    assert_summaries(&out, "riscv64", &[("emulated", one), ("qemu", one)]);
    let path = scratch("half-zfh.clif", HALF_ZFH);
    passes_printing(&[], &path, None, &["passed (2 run lines, qemu)"]);
}

/// Vector and Zcb code in one target, as 157 targets of upstream's corpus
/// are (`has_v has_c has_zcb`): unicorn lacks V, QEMU 7.2 lacks Zcb, which
/// the QEMU machine carries out. With `has_c has_zcb`, `imul v0, v1`
/// compiles to `c.mul a0, a1`, `bnot` to `c.not`, a byte load through a
/// register base (`v1 - v1 + addr`, not `sp`) to `c.lbu` and a halfword
/// store to `c.sh`
/// (`crates/qemu/tests/zcb.rs` checks these encodings).
const VECTOR_ZCB: &str = "test run\n\
    target riscv64 has_v has_c has_zcb\n\
    \n\
    function %vmul(i64, i64) -> i64 {\n\
    block0(v0: i64, v1: i64):\n\
    \x20   v2 = splat.i64x2 v0\n\
    \x20   v3 = splat.i64x2 v1\n\
    \x20   v4 = iadd v2, v3\n\
    \x20   v5 = extractlane v4, 1\n\
    \x20   v6 = imul v5, v1\n\
    \x20   return v6\n\
    }\n\
    ; run: %vmul(2, 3) == 15\n\
    ; run: %vmul(-1, 0x100000000) == 0xffffffff00000000\n\
    \n\
    function %mul(i64, i64) -> i64 {\n\
    block0(v0: i64, v1: i64):\n\
    \x20   v2 = imul v0, v1\n\
    \x20   return v2\n\
    }\n\
    ; run: %mul(6, 7) == 42\n\
    ; run: %mul(0x100000001, -1) == -4294967297\n\
    \n\
    function %not(i64) -> i64 {\n\
    block0(v0: i64):\n\
    \x20   v1 = bnot v0\n\
    \x20   return v1\n\
    }\n\
    ; run: %not(0) == -1\n\
    ; run: %not(0x0f0f) == 0xfffffffffffff0f0\n\
    \n\
    function %bytes(i64, i64) -> i64 {\n\
    \x20   ss0 = explicit_slot 16, align = 8\n\
    block0(v0: i64, v1: i64):\n\
    \x20   v2 = stack_addr.i64 ss0\n\
    \x20   v3 = isub v1, v1\n\
    \x20   v4 = iadd v2, v3\n\
    \x20   store v0, v4\n\
    \x20   istore16 v1, v4+2\n\
    \x20   v5 = uload8.i64 v4+3\n\
    \x20   v6 = load.i64 v4\n\
    \x20   v7 = iadd v5, v6\n\
    \x20   return v7\n\
    }\n\
    ; run: %bytes(0x1122334455667788, 0xaabb) == 0x11223344aabb7832\n";

#[test]
fn auto_runs_vector_and_zcb_lines_on_qemu() {
    require_qemu!("riscv64");
    let path = scratch("vector-zcb.clif", VECTOR_ZCB);
    let out = passes_printing(
        &[],
        &path,
        None,
        &["run [riscv64 has_v has_c has_zcb]: passed (7 run lines, qemu)"],
    );
    let counts = Some("7 passed, 0 failed, 0 skipped");
    assert_summaries(&out, "riscv64", &[("qemu", counts), ("emulated", None)]);
}

#[test]
fn unicorn_only_skips_vector_lines_with_the_reason() {
    let path = riscv_vectors("vectors-rvv-2.clif");
    let lines = run_lines(&path);
    let out = passes_printing(
        &["--emulator", "unicorn"],
        &path,
        None,
        &["SKIP [riscv64 has_v]: riscv64 emulated CPU lacks has_v (vector)"],
    );
    let counts = format!("0 passed, 0 failed, {lines} skipped");
    assert_summaries(
        &out,
        "riscv64",
        &[("emulated", Some(&counts)), ("qemu", None)],
    );
}

#[test]
fn qemu_only_runs_every_emulated_line_on_qemu() {
    require_qemu!("riscv64");
    let path = scratch("half-qemu.clif", HALF);
    let out = passes_printing(
        &["--emulator", "qemu"],
        &path,
        None,
        &["run [riscv64]: passed (1 run line, qemu)"],
    );
    let counts = Some("2 passed, 0 failed, 0 skipped");
    assert_summaries(&out, "riscv64", &[("qemu", counts), ("emulated", None)]);
}

#[test]
fn flags_neither_cpu_has_are_skipped_naming_both() {
    require_qemu!("riscv64");
    let path = scratch(
        "zfa.clif",
        "test run\ntarget riscv64 has_zfa\n\nfunction %m(f64, f64) -> f64 {\n\
         block0(v0: f64, v1: f64):\n    v2 = fmin v0, v1\n    return v2\n}\n\
         ; run: %m(0x1.0p0, 0x2.0p0) == 0x1.0p0\n",
    );
    passes_printing(
        &[],
        &path,
        None,
        &[
            "SKIP [riscv64 has_zfa]: riscv64 emulated CPU lacks has_zfa (additional \
             floating-point); riscv64 QEMU 7.2 CPU lacks has_zfa",
            "riscv64 emulated 0 passed, 0 failed, 1 skipped",
        ],
    );
}

#[test]
fn without_qemu_on_path_auto_skips_naming_qemu() {
    let path = riscv_vectors("vectors-rvv-3.clif");
    let lines = run_lines(&path);
    let out = passes_printing(
        &[],
        &path,
        Some("/nonexistent"),
        &[
            "SKIP [riscv64 has_v]: riscv64 emulated CPU lacks has_v (vector); QEMU's CPU \
             has them, but `qemu-riscv64` is not on PATH (install QEMU user mode, package \
             qemu-user)",
        ],
    );
    let counts = format!("0 passed, 0 failed, {lines} skipped");
    assert_summaries(&out, "riscv64", &[("emulated", Some(&counts))]);
    // `--emulator qemu` skips the same way, and plain targets too.
    let half = scratch("half-no-qemu.clif", HALF);
    passes_printing(
        &["--emulator", "qemu"],
        &half,
        Some("/nonexistent"),
        &[
            "SKIP [riscv64]: `qemu-riscv64` is not on PATH",
            "riscv64 qemu 0 passed, 0 failed, 2 skipped",
        ],
    );
}

#[test]
fn s390x_z15_lines_run_on_qemu() {
    require_qemu!("s390x");
    // `band` with a `bnot` operand is `ncgrk` with
    // miscellaneous-instruction-extensions 3.
    let path = scratch(
        "mie3.clif",
        "test run\ntarget s390x has_mie3\n\nfunction %andn(i64, i64) -> i64 {\n\
         block0(v0: i64, v1: i64):\n    v2 = bnot v1\n    v3 = band v0, v2\n    return v3\n}\n\
         ; run: %andn(0xff, 0x0f) == 0xf0\n; run: %andn(-1, 0) == -1\n",
    );
    passes_printing(
        &[],
        &path,
        None,
        &["run [s390x has_mie3]: passed (2 run lines, qemu)"],
    );
    passes_printing(
        &["--emulator", "unicorn"],
        &path,
        None,
        &["SKIP [s390x has_mie3]: s390x emulated CPU lacks has_mie3"],
    );
}

#[test]
fn a_bad_emulator_name_is_a_usage_error() {
    let o = assert_exit_codes(&[(&["test", "--emulator", "bochs", "x"], 2)]);
    assert_contains(
        &stderr(&o),
        &["--emulator needs `unicorn`, `qemu` or `auto`, not `bochs`"],
    );
    assert_exit_codes(&[(&["test", "x", "--emulator"], 2)]);
}
