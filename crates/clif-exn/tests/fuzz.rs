//! `clif-exn fuzz`: the CI sweep, and proof that the oracle has teeth.

mod common;

use std::path::Path;
use std::process::Output;

use common::{assert_contains, assert_exit_codes, command, stdout};
use cranelift_exn_fuzzgen::program::{Stmt, from_seed};
use cranelift_exn_fuzzgen::sweep::write_reproduction;
use cranelift_exn_fuzzgen::{Ending, Mismatch, oracle};

/// `clif-exn fuzz --seed 0 --count COUNT ARGS...`: how it ended, and its
/// standard output.
fn fuzz(count: &str, args: &[&str]) -> (Output, String) {
    let output = command(&["fuzz", "--seed", "0", "--count", count])
        .args(args)
        .output()
        .expect("clif-exn runs");
    let text = stdout(&output);
    (output, text)
}

/// The deterministic sweep CI runs: every program on x86_64 natively and on
/// all four ISAs emulated, against the oracle.
#[test]
fn the_ci_sweep_finds_no_mismatch() {
    let out = tempdir("sweep");
    let (output, text) = fuzz("250", &["--out", &out]);
    assert!(output.status.success(), "{text}{}", common::stderr(&output));
    assert_contains(&text, &["250 programs from seed 0", "0 mismatches"]);
}

/// With a deliberate unwinder bug switched on, the same sweep reports a
/// mismatch within its seeds and writes a minimized run test that passes
/// without the bug and fails with it.
fn sabotage_is_caught(sabotage: &str) {
    let out = tempdir(sabotage);
    let isas = ["--isa", "x86_64,aarch64", "--max", "1"];
    let (output, text) = fuzz(
        "250",
        &[&isas[..], &["--out", &out, "--sabotage", sabotage]].concat(),
    );
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("MISMATCH seed"), "{text}");
    let written = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("minimized: "))
        .unwrap_or_else(|| panic!("no reproduction written: {text}"));
    let repro = std::fs::read_to_string(written).unwrap();
    assert!(repro.starts_with("test run\ntarget "), "{repro}");
    if repro.contains("; run: %main") {
        let mut test = command(&["test", written]);
        let fixed = test.output().expect("clif-exn runs");
        assert!(fixed.status.success(), "{}\n{repro}", stdout(&fixed));
        let broken = test
            .env("CRANELIFT_EXN_SABOTAGE", sabotage)
            .output()
            .expect("clif-exn runs");
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
    let emulators = ["--emulators", "unicorn,qemu"];
    let (output, text) = fuzz(
        "20",
        &[&["--isa", "x86_64,riscv64,s390x"], &emulators[..]].concat(),
    );
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
    assert_contains(&text, &[&machines, "0 mismatches"]);

    let out = tempdir("qemu-handler-lookup");
    let qemu_only = ["--isa", "aarch64", "--emulators", "qemu", "--max", "1"];
    let sabotage = ["--out", &out, "--sabotage", "handler-lookup"];
    let (output, text) = fuzz("250", &[&qemu_only[..], &sabotage].concat());
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("[aarch64 qemu]"), "{text}");
}

#[test]
fn bad_fuzz_arguments_are_usage_errors() {
    assert_exit_codes(&[
        (&["fuzz", "--count"], 2),
        (&["fuzz", "--isa", "mips"], 2),
        (&["fuzz", "--sabotage", "everything"], 2),
        (&["fuzz", "--emulators", "bochs"], 2),
        (&["fuzz", "-j", "0"], 2),
    ]);
}

/// `body` with every host function a CLIF function.
fn hosts_in_clif(body: &mut [Stmt]) {
    for stmt in body {
        match stmt {
            Stmt::Host { in_clif, .. } => *in_clif = true,
            Stmt::Loop { body, .. } => hosts_in_clif(body),
            _ => {}
        }
    }
}

/// Reproductions whose host functions are CLIF functions are `test run`
/// files that pass on every ISA (emulated where not native): the CLIF
/// stand-ins and their `%__cranelift_exn_throw_to_entry` calls do what the
/// oracle says. One that still calls a host function is written as a
/// description with the command that replays it.
#[test]
fn reproductions_with_host_functions() {
    let out = tempdir("host-reproductions");
    let mut written = 0;
    for seed in 0..200 {
        let mut program = from_seed(seed);
        if program.hosts().is_empty() {
            continue;
        }
        if written == 0 {
            let mismatch = Mismatch {
                seed: Some(seed),
                machine: "x86_64 native".into(),
                expected: oracle::expected(&program),
                actual: Ending::Value(0),
                program: program.clone(),
            };
            let path = write_reproduction(Path::new(&out), &mismatch).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            let described =
                program.incremental || program.hosts().iter().any(|(_, in_clif)| !in_clif);
            assert_eq!(path.extension().unwrap() == "txt", described, "{text}");
            if described {
                let replay = format!("clif-exn fuzz --seed {seed} --count 1 --isa x86_64");
                assert_contains(&text, &["Not a test file", &replay]);
            }
            std::fs::remove_file(path).unwrap();
        }
        for function in &mut program.functions {
            hosts_in_clif(&mut function.body);
        }
        program.incremental = false;
        let expected = oracle::expected(&program);
        if !matches!(expected, Ending::Value(_)) {
            continue;
        }
        for arch in ["x86_64", "aarch64", "riscv64", "s390x"] {
            let mismatch = Mismatch {
                seed: Some(seed),
                machine: format!("{arch} emulated"),
                expected: expected.clone(),
                actual: Ending::Value(0),
                program: program.clone(),
            };
            let path = write_reproduction(Path::new(&out), &mismatch).unwrap();
            assert_eq!(path.extension().unwrap(), "clif");
        }
        written += 1;
        if written == 12 {
            break;
        }
    }
    assert_eq!(written, 12);
    let output = command(&["test", &out]).output().expect("clif-exn runs");
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert_contains(&text, &["48 files: 48 passed"]);
}

/// A fresh directory under the target directory.
fn tempdir(name: &str) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir.display().to_string()
}
