//! `clif-exn fuzz`: the CI sweep, and proof that the oracle has teeth.

use std::path::Path;
use std::process::{Command, Output};

fn clif_exn(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clif-exn"));
    command.args(args);
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().expect("clif-exn runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The deterministic sweep CI runs: every program on x86_64 natively and on
/// all four ISAs emulated, against the oracle.
#[test]
fn the_ci_sweep_finds_no_mismatch() {
    let out = tempdir("sweep");
    let output = clif_exn(
        &[
            "fuzz",
            "--seed",
            "0",
            "--count",
            "250",
            "--out",
            out.as_str(),
        ],
        &[],
    );
    let text = stdout(&output);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("250 programs from seed 0"), "{text}");
    assert!(text.contains("0 mismatches"), "{text}");
}

/// With a deliberate unwinder bug switched on, the same sweep reports a
/// mismatch within its seeds and writes a minimized run test that passes
/// without the bug and fails with it.
fn sabotage_is_caught(sabotage: &str) {
    let out = tempdir(sabotage);
    let output = clif_exn(
        &[
            "fuzz",
            "--seed",
            "0",
            "--count",
            "250",
            "--isa",
            "x86_64,aarch64",
            "--max",
            "1",
            "--out",
            out.as_str(),
            "--sabotage",
            sabotage,
        ],
        &[],
    );
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("MISMATCH seed"), "{text}");
    let written = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("minimized: "))
        .unwrap_or_else(|| panic!("no reproduction written: {text}"));
    let repro = std::fs::read_to_string(written).unwrap();
    assert!(repro.starts_with("test run\ntarget "), "{repro}");
    if repro.contains("; run: %main") {
        let fixed = clif_exn(&["test", written], &[]);
        assert!(fixed.status.success(), "{}\n{repro}", stdout(&fixed));
        let broken = clif_exn(&["test", written], &[("CRANELIFT_EXN_SABOTAGE", sabotage)]);
        assert_eq!(
            broken.status.code(),
            Some(1),
            "{}\n{repro}",
            stdout(&broken)
        );
    }
}

#[test]
fn a_broken_handler_lookup_is_caught() {
    sabotage_is_caught("handler-lookup");
}

#[test]
fn a_skipped_callee_saved_restore_is_caught() {
    sabotage_is_caught("callee-saves");
}

/// `--emulators unicorn,qemu`: every program runs on both emulators (and
/// natively for the host's ISA) and each outcome is compared with the
/// oracle; an unwinder bug is caught on the QEMU machine alone too.
#[test]
fn programs_are_compared_on_unicorn_and_qemu() {
    let output = clif_exn(
        &[
            "fuzz",
            "--seed",
            "0",
            "--count",
            "20",
            "--isa",
            "x86_64,riscv64,s390x",
            "--emulators",
            "unicorn,qemu",
        ],
        &[],
    );
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    let machines: Vec<String> = ["x86_64", "riscv64", "s390x"]
        .iter()
        .flat_map(|arch| {
            let native = (std::env::consts::ARCH == *arch).then(|| format!("{arch} native"));
            native
                .into_iter()
                .chain([format!("{arch} emulated"), format!("{arch} qemu")])
        })
        .collect();
    let machines = format!("on {} (", machines.join(", "));
    assert!(text.contains(&machines), "{machines}\n{text}");
    assert!(text.contains("0 mismatches"), "{text}");

    let out = tempdir("qemu-handler-lookup");
    let output = clif_exn(
        &[
            "fuzz",
            "--seed",
            "0",
            "--count",
            "250",
            "--isa",
            "aarch64",
            "--emulators",
            "qemu",
            "--max",
            "1",
            "--out",
            out.as_str(),
            "--sabotage",
            "handler-lookup",
        ],
        &[],
    );
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("[aarch64 qemu]"), "{text}");
}

#[test]
fn bad_fuzz_arguments_are_usage_errors() {
    for args in [
        &["fuzz", "--count"][..],
        &["fuzz", "--isa", "mips"],
        &["fuzz", "--sabotage", "everything"],
        &["fuzz", "--emulators", "bochs"],
        &["fuzz", "-j", "0"],
    ] {
        let output = clif_exn(args, &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

/// A fresh directory under the target directory.
fn tempdir(name: &str) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir.display().to_string()
}
