//! `clif-exn test` on input that used to take the whole run down: run lines
//! that hang or crash the process, paths that cannot be read or are not
//! UTF-8, symbolic link loops, unknown test kinds, deep recursion under
//! different `-j`; and what the output shows while and after files run.
//! Each case runs the real binary on files written to a scratch directory.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_contains, clif_exn_test as clif_exn, output_of, stderr, stdout};

/// A fresh directory for one test.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clif-exn-robust-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A run test on `target` whose run line is on line 10: `%f` returns 5.
fn good(target: &str) -> String {
    format!(
        "test run\ntarget {target}\n\nfunction %f() -> i64 {{\nblock0:\n    \
         v0 = iconst.i64 5\n    return v0\n}}\n\n; run: %f() == 5\n"
    )
}

/// A run test on `target` whose function never returns; the run line is
/// line 10.
fn spin(target: &str) -> String {
    format!(
        "test run\ntarget {target}\n\nfunction %f() -> i64 {{\nblock0:\n    \
         jump block1\nblock1:\n    jump block1\n}}\n; run: %f() == 1\n"
    )
}

/// The 1-based line of the first run line of `text`.
#[cfg(target_arch = "x86_64")]
fn run_line(text: &str) -> usize {
    text.lines().position(|l| l.starts_with("; run:")).unwrap() + 1
}

/// A run test on x86_64 that jumps to `code` (CLIF computing `v2`, the
/// target address).
#[cfg(target_arch = "x86_64")]
fn jump_to(code: &str) -> String {
    format!(
        "test run\nset preserve_frame_pointers=true\ntarget x86_64\n\n\
         function %f() -> i64 {{\n    sig0 = () -> i64\nblock0:\n{code}\n    \
         v3 = call_indirect sig0, v2()\n    return v3\n}}\n; run: %f() == 1\n"
    )
}

/// The summary's file counts.
fn files_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.contains(" files: "))
        .unwrap_or_else(|| panic!("no summary:\n{out}"))
}

#[cfg(target_arch = "x86_64")]
#[test]
fn a_native_run_line_that_never_returns_times_out_and_the_others_run() {
    let dir = scratch_dir("hang");
    write(&dir, "a-good.clif", &good("x86_64"));
    write(&dir, "b-spin.clif", &spin("x86_64"));
    write(&dir, "c-good.clif", &good("s390x"));
    let start = Instant::now();
    let o = clif_exn(&["--timeout", "2"], &[&dir]);
    let out = output_of(&o, 1, &[]);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
    assert_contains(
        &out,
        &["b-spin.clif:10 [x86_64] %f()\n    expected: == 1\n    actual:   timed out after 2 s"],
    );
    assert!(
        files_line(&out).starts_with("3 files: 2 passed, 1 failed, 0 skipped"),
        "{out}"
    );
    // A notice while it ran (at half the limit).
    let err = stderr(&o);
    assert!(
        err.contains("STALLED ") && err.contains("b-spin.clif:10 run [x86_64]"),
        "{err}"
    );
}

/// A run line that hangs on the first target does not take the file's
/// other targets with it (they run in parts of their own, announced before
/// the first target runs), and each target's other lines, whose outcomes
/// went with its process, are counted as not reported, with the reason.
#[test]
fn a_hanging_run_line_leaves_the_other_targets_running() {
    let dir = scratch_dir("hang-targets");
    write(
        &dir,
        "spin-on-zero.clif",
        "test run\ntarget riscv64\ntarget aarch64\n\nfunction %f(i64) -> i64 {\n\
         block0(v0: i64):\n    brif v0, block2, block1\nblock1:\n    jump block1\n\
         block2:\n    return v0\n}\n; run: %f(1) == 1\n; run: %f(0) == 0\n; run: %f(3) == 3\n",
    );
    let o = clif_exn(&["--timeout", "1"], &[&dir]);
    let out = output_of(
        &o,
        1,
        &[
            "spin-on-zero.clif:14 [riscv64] %f(0)\n    expected: == 0\n    actual:   timed out after 1 s",
            "spin-on-zero.clif:14 [aarch64] %f(0)\n    expected: == 0\n    actual:   timed out after 1 s",
            "2 skipped: not reported: another run line of the target crashed or hung",
            "run: 0 passed, 2 failed, 4 skipped",
        ],
    );
    assert!(
        files_line(&out).starts_with("1 files: 0 passed, 1 failed"),
        "{out}"
    );
}

/// A step that is not a run line (here the interpreter on an endless loop)
/// is limited too, and named.
#[test]
fn an_endless_interpret_test_times_out_and_is_named() {
    let dir = scratch_dir("interpret-hang");
    write(
        &dir,
        "a-spin.clif",
        "test interpret\n\nfunction %f() -> i64 {\nblock0:\n    jump block1\nblock1:\n    \
         jump block1\n}\n; run: %f() == 1\n",
    );
    write(&dir, "b-good.clif", &good("s390x"));
    let o = clif_exn(&["--timeout", "1"], &[&dir]);
    let out = output_of(
        &o,
        1,
        &[&format!(
            "FAIL {} in test interpret: timed out after 1 s",
            dir.join("a-spin.clif").display()
        )],
    );
    assert!(
        files_line(&out).starts_with("2 files: 1 passed, 1 failed"),
        "{out}"
    );
}

#[test]
fn an_emulated_run_line_that_never_returns_times_out_with_a_plain_message() {
    let dir = scratch_dir("emulated-hang");
    write(&dir, "a-spin.clif", &spin("riscv64"));
    write(&dir, "b-good.clif", &good("riscv64"));
    let o = clif_exn(&["--timeout", "1"], &[&dir]);
    let out = output_of(
        &o,
        1,
        &["a-spin.clif:10 [riscv64] %f()", "timed out after 1 s"],
    );
    assert!(!out.contains("Some(") && !out.contains("None"), "{out}");
    assert!(
        files_line(&out).starts_with("2 files: 1 passed, 1 failed"),
        "{out}"
    );
}

/// A call to address 0x10 is a trap of its run line (the native machine
/// delivers fetch faults reached from JIT code); a wild jump into the host's
/// own code (just before the return address of the entry trampoline into
/// the runner's Rust code) runs host instructions that may crash the
/// process: either way the file fails at its run line and the run goes on.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_native_run_line_that_crashes_the_process_fails_its_file_only() {
    let dir = scratch_dir("crash");
    let null = jump_to("    v2 = iconst.i64 16");
    // %f's caller is the inner (tail) entry trampoline, whose caller is the
    // outer one, called from Rust.
    let wild = jump_to(
        "    v0 = get_frame_pointer.i64\n    v4 = load.i64 v0\n    v5 = load.i64 v4\n    \
         v6 = load.i64 v5+8\n    v1 = iconst.i64 64\n    v2 = isub v6, v1",
    );
    write(&dir, "a-null.clif", &null);
    write(&dir, "b-wild.clif", &wild);
    write(&dir, "c-good.clif", &good("x86_64"));
    let o = clif_exn(&["--timeout", "5"], &[&dir]);
    let out = output_of(
        &o,
        1,
        &[&format!(
            "a-null.clif:{} [x86_64] %f()\n    expected: == 1\n    actual:   \
             trap user250: a call or jump to 0x10, which holds no code",
            run_line(&null)
        )],
    );
    // Whatever the host code does (crash, exit, hang), it is this line's
    // failure.
    assert_contains(
        &out,
        &[&format!("b-wild.clif:{} [x86_64] %f()", run_line(&wild))],
    );
    assert!(
        files_line(&out).starts_with("3 files: 1 passed, 2 failed, 0 skipped"),
        "{out}"
    );
    assert_contains(&out, &["x86_64 native 1 passed, 2 failed"]);
}

#[test]
fn paths_that_cannot_be_read_fail_alone() {
    let dir = scratch_dir("paths");
    write(&dir, "good.clif", &good("aarch64"));
    // A link to itself: neither a file nor a directory can be read there.
    #[cfg(unix)]
    std::os::unix::fs::symlink("loop.clif", dir.join("loop.clif")).unwrap();
    let locked = dir.join("locked");
    std::fs::create_dir(&locked).unwrap();
    write(&locked, "inner.clif", &good("aarch64"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    // Root reads any directory; the check applies to other users.
    let locked_out = std::fs::read_dir(&locked).is_err();
    let missing = dir.join("missing");
    let o = clif_exn(&[], &[&missing, &dir]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = output_of(
        &o,
        1,
        &[&format!(
            "FAIL {}: No such file or directory",
            missing.display()
        )],
    );
    #[cfg(unix)]
    assert_contains(
        &out,
        &[&format!("FAIL {}: ", dir.join("loop.clif").display())],
    );
    if locked_out {
        assert_contains(
            &out,
            &[&format!("FAIL {}: Permission denied", locked.display())],
        );
        assert!(
            files_line(&out).starts_with("4 files: 1 passed, 3 failed"),
            "{out}"
        );
    } else {
        assert!(
            files_line(&out).starts_with("4 files: 2 passed, 2 failed"),
            "{out}"
        );
    }
    assert_contains(&out, &["aarch64 emulated "]);
}

/// Non-UTF-8 names, given on the command line or found in a directory: the
/// file runs, and a failure is reported at its run line (line 10), not at
/// the function's.
#[cfg(unix)]
#[test]
fn non_utf8_paths_run_and_report_their_run_lines() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = scratch_dir("non-utf8");
    let sub = dir.join(OsStr::from_bytes(b"d\xffir"));
    std::fs::create_dir(&sub).unwrap();
    let wrong = good("aarch64").replace("== 5", "== 6");
    let named = sub.join(OsStr::from_bytes(b"n\xfe.clif"));
    std::fs::write(&named, &wrong).unwrap();
    for path in [&named, &sub] {
        let o = clif_exn(&[], &[path]);
        let out = output_of(&o, 1, &[".clif:10 [aarch64] %f()"]);
        assert!(
            out.contains("expected: == 6") && out.contains("actual:   5"),
            "{out}"
        );
        assert!(
            files_line(&out).starts_with("1 files: 0 passed, 1 failed"),
            "{out}"
        );
    }
}

/// `sub/a -> ..` and `sub/b -> ..`: every file runs once, and the run ends.
#[cfg(unix)]
#[test]
fn symlink_loops_visit_each_file_once() {
    let dir = scratch_dir("loops");
    write(&dir, "one.clif", &good("s390x"));
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    write(&sub, "two.clif", &good("s390x"));
    std::os::unix::fs::symlink("..", sub.join("a")).unwrap();
    std::os::unix::fs::symlink("..", sub.join("b")).unwrap();
    std::os::unix::fs::symlink("two.clif", sub.join("again.clif")).unwrap();
    let o = clif_exn(&["-v"], &[&dir, &sub]);
    let out = output_of(&o, 0, &[]);
    assert!(files_line(&out).starts_with("2 files: 2 passed"), "{out}");
    assert_contains(
        &out,
        &[
            &format!("{} (", dir.join("one.clif").display()),
            &format!("{} (", sub.join("two.clif").display()),
        ],
    );
}

/// Unknown kinds fail as upstream's runner fails them; kinds upstream has
/// but this runner does not are skipped; a file with nothing that ran is
/// skipped, never passed.
#[test]
fn unknown_kinds_fail_and_all_skipped_files_are_skipped() {
    let dir = scratch_dir("kinds");
    let body = "function %f() -> i64 {\nblock0:\n    v0 = iconst.i64 5\n    return v0\n}\n; run: %f() == 5\n";
    write(
        &dir,
        "a-typo.clif",
        &format!("test compiel\ntarget x86_64\n\n{body}"),
    );
    write(
        &dir,
        "b-unwind.clif",
        &format!("test unwind\ntarget x86_64\n\n{body}"),
    );
    write(
        &dir,
        "c-safepoint.clif",
        &format!("test safepoint\ntarget x86_64\n\n{body}"),
    );
    write(
        &dir,
        "d-run.clif",
        &format!("test run\ntarget aarch64\n\n{body}"),
    );
    let o = clif_exn(&[], &[&dir]);
    let out = output_of(
        &o,
        1,
        &["a-typo.clif: `test compiel`: unknown test command 'compiel'\n"],
    );
    assert!(
        files_line(&out).starts_with("4 files: 1 passed, 1 failed, 2 skipped"),
        "{out}"
    );
    assert_contains(&out, &["1 × `test unwind` is not supported by this runner"]);
    // Without execution, the run file has nothing that ran.
    let o = clif_exn(&["--no-run"], &[&dir.join("d-run.clif")]);
    let out = output_of(&o, 0, &[]);
    assert!(
        files_line(&out).starts_with("1 files: 0 passed, 0 failed, 1 skipped"),
        "{out}"
    );
    assert_contains(&out, &["run: not executed (--no-run)"]);
    assert!(!out.contains("run: 0 passed"), "{out}");
}

/// A recursion that needs about 6 MiB of stack passes whatever `-j` and
/// however many files run; one that needs about 16 MiB overflows the same
/// way everywhere.
#[cfg(target_arch = "x86_64")]
#[test]
fn native_run_lines_get_the_same_stack_whatever_the_scheduling() {
    let dir = scratch_dir("stack");
    let recursion = |depth: u32| {
        format!(
            "test run\ntarget x86_64\n\nfunction %rec(i64) -> i64 {{\n    fn0 = %rec(i64) -> i64\n\
             block0(v0: i64):\n    brif v0, block1, block2\nblock1:\n    v1 = iconst.i64 1\n    \
             v2 = isub v0, v1\n    v3 = call fn0(v2)\n    v4 = iadd v3, v1\n    return v4\n\
             block2:\n    return v0\n}}\n; run: %rec({depth}) == {depth}\n"
        )
    };
    let deep = write(&dir, "a-deep.clif", &recursion(400_000));
    write(&dir, "b-other.clif", &good("x86_64"));
    let too_deep = scratch_dir("stack-overflow");
    let overflow = write(&too_deep, "a-too-deep.clif", &recursion(1_000_000));
    write(&too_deep, "b-other.clif", &good("x86_64"));
    for jobs in ["1", "2", "4"] {
        let o = clif_exn(&["-j", jobs], &[&deep]);
        assert!(o.status.success(), "-j {jobs}: {}", stdout(&o));
        let o = clif_exn(&["-j", jobs], &[&dir]);
        assert!(o.status.success(), "-j {jobs}: {}", stdout(&o));
        for o in [
            clif_exn(&["-j", jobs], &[&overflow]),
            clif_exn(&["-j", jobs], &[&too_deep]),
        ] {
            output_of(
                &o,
                1,
                &["a-too-deep.clif:17 [x86_64] %rec(1000000)", "trap stk_ovf"],
            );
        }
    }
}

/// On a terminal (here `script`'s pseudo-terminal, where the tool exists),
/// a run over 2 s draws a progress line naming what runs longest, and
/// clears it before printing; without a terminal there is none.
#[test]
fn a_progress_line_is_drawn_on_a_terminal_only() {
    let dir = scratch_dir("progress");
    let spin = write(&dir, "spin.clif", &spin("aarch64"));
    let exe = env!("CARGO_BIN_EXE_clif-exn");
    let command = format!("'{exe}' test --timeout 3 '{}'", spin.display());
    let Ok(o) = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
    else {
        eprintln!("no `script`; skipping the terminal half");
        return;
    };
    // `script -e` passes on clif-exn's status; anything else means no
    // pseudo-terminal could be made here.
    if o.status.code() != Some(1) {
        eprintln!("`script` failed ({}); skipping", stderr(&o));
        return;
    }
    let out = stdout(&o);
    assert!(
        out.contains("\r\x1b[K[0/1 files, 2s] 1 running; longest: ")
            && out.contains("spin.clif:10 run [aarch64] ("),
        "{out:?}"
    );
    assert!(out.contains("\r\x1b[KFAIL "), "{out:?}");
    let o = clif_exn(&["--timeout", "3"], &[&spin]);
    assert!(!stderr(&o).contains('\x1b'), "{}", stderr(&o));
    assert!(!stdout(&o).contains('\x1b'), "{}", stdout(&o));
}

/// Results are printed as soon as the file order allows: the first file's
/// lines arrive while a later file still runs.
#[test]
fn results_stream_while_later_files_run() {
    let dir = scratch_dir("stream");
    write(&dir, "a-good.clif", &good("aarch64"));
    write(&dir, "b-spin.clif", &spin("aarch64"));
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_clif-exn"))
        .args(["test", "-v", "-j", "2", "--timeout", "4"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let first_at = start.elapsed();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    let done_at = start.elapsed();
    assert_contains(&first, &["a-good.clif ("]);
    assert!(
        first_at + Duration::from_millis(1500) < done_at,
        "first line at {first_at:?}, end at {done_at:?}"
    );
    assert_eq!(status.code(), Some(1));
    let rest = rest.join("\n");
    assert_contains(&rest, &["b-spin.clif:10 [aarch64]"]);
}

/// `-v` gives every verdict (passing run targets included); `; print:`
/// output is labelled with file, line and target (or kind), for `run` and
/// `interpret` alike, in target order; a file's targets, run apart, are
/// reported in the order of its target lines.
#[test]
fn verbose_verdicts_and_print_output_are_labelled() {
    let dir = scratch_dir("print");
    let body = "function %f(i64) -> i64 {\nblock0(v0: i64):\n    v1 = iadd v0, v0\n    return v1\n}\n\
                ; print: %f(4)\n; run: %f(5) == 10\n";
    let run = write(
        &dir,
        "run.clif",
        &format!("test run\ntarget x86_64\ntarget aarch64\ntarget riscv64\ntarget s390x\n\n{body}"),
    );
    let interp = write(&dir, "interp.clif", &format!("test interpret\n\n{body}"));
    let o = clif_exn(&["-v"], &[&run, &interp]);
    let out = output_of(&o, 0, &[]);
    let mut at = 0;
    for arch in ["x86_64", "aarch64", "riscv64", "s390x"] {
        let print = format!("PRINT {}:12 [{arch}] %f(4) -> 8\n", run.display());
        let verdict = format!("  run [{arch}]: passed (2 run lines, ");
        let p = out[at..]
            .find(&print)
            .unwrap_or_else(|| panic!("{print}: {out}"))
            + at;
        let v = out[p..]
            .find(&verdict)
            .unwrap_or_else(|| panic!("{verdict}: {out}"))
            + p;
        at = v;
    }
    assert_contains(
        &out,
        &[
            &format!("PRINT {}:8 [interpret] %f(4) -> 8\n", interp.display()),
            "  interpret: passed\n",
        ],
    );
}

/// The cosmetic points: aligned per-target table (long target names), the
/// skip reason of a file, no empty headers, one-line option errors.
#[test]
fn summary_tables_and_messages_are_tidy() {
    let dir = scratch_dir("tidy");
    let pulley = write(
        &dir,
        "pulley.clif",
        "test run\ntarget pulley32be\ntarget pulley64be\ntarget s390x\n\n\
         function %f() -> i64 {\nblock0:\n    v0 = iconst.i64 1\n    return v0\n}\n; run: %f() == 1\n",
    );
    let o = clif_exn(&[], &[&pulley]);
    let out = output_of(&o, 0, &[]);
    let table: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "run lines by target:")
        .skip(1)
        .filter(|l| !l.starts_with("      "))
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(table.len(), 3, "{out}");
    let column = |l: &str| l.find(" passed").unwrap();
    assert!(table.iter().all(|l| column(l) == column(table[0])), "{out}");

    let i686 = write(
        &dir,
        "i686.clif",
        "test compile\ntarget i686\n\nfunction %f() {\nblock0:\n    return\n}\n",
    );
    let o = clif_exn(&[], &[&i686]);
    let out = output_of(&o, 0, &["1 × file skipped: unsupported target 'i686'"]);
    assert!(!out.contains("tests by kind and target:"), "{out}");
    let o = clif_exn(&["-v"], &[&i686]);
    assert!(
        stdout(&o).contains(&format!(
            "  skipped: {}:2: unsupported target 'i686'",
            i686.display()
        )),
        "{}",
        stdout(&o)
    );

    let option = write(
        &dir,
        "option.clif",
        "test run precise-output\ntarget s390x\n\nfunction %f() {\nblock0:\n    return\n}\n",
    );
    let o = clif_exn(&[], &[&option]);
    let out = output_of(&o, 1, &[]);
    let line = format!(
        "FAIL {}: `test run precise-output`: unknown option `precise-output`\n\n",
        option.display()
    );
    assert!(out.starts_with(&line), "{out}");
}
