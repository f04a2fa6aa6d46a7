//! `test run`: compile the file's functions for each `target` line, link and
//! load them on a machine (native for the host, an emulator otherwise, as a
//! [`MachineProvider`] decides) and execute every `; run:` and `; print:`
//! line. Unlike upstream, which runs only host targets, every target the
//! provider can serve is executed; a target it cannot serve (a CPU feature
//! neither the host nor the emulator has) is skipped with the reason.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use cranelift_codegen::ir::Function;
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::FlagsOrIsa;
use cranelift_exn::Error;
use cranelift_exn::compile::build_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::MachineKind;
pub use cranelift_exn::machine::MachineProvider;
use cranelift_exn::module::Module;
use cranelift_reader::{Comparison, RunCommand, TestCommand, TestFile, parse_run_command};

use crate::subtest::{
    Context, KindFacts, Printed, RunFailure, RunReport, SourceFile, SubTest, set_flags,
    show_invocation, show_values,
};

/// Where a file's run has got to: what a supervisor needs to name the test,
/// target and run line that was executing when a process died or hung.
#[derive(Clone, Copy, Debug)]
pub enum Progress<'a> {
    /// A test kind starts on a target (its label), or once (`None`).
    Test {
        /// The kind, as written after `test`.
        kind: &'a str,
        /// The `target` line's text without `target`.
        target: Option<&'a str>,
    },
    /// A run line starts executing.
    Line {
        /// Its 1-based line number.
        line: usize,
        /// Whether it runs in an emulator (which enforces its own time
        /// limit) rather than natively.
        emulated: bool,
    },
    /// A [`crate::runone::Part::Main`] run leaves `test run` on these
    /// targets (indices) to [`crate::runone::Part::RunTarget`] runs; told
    /// before any test runs, so that they run even if this part never
    /// finishes (and can start at once).
    Deferred {
        /// The targets' indices.
        targets: &'a [usize],
    },
}

/// Told of each [`Progress`] step as it happens.
pub type ProgressHook = Arc<dyn Fn(Progress<'_>) + Send + Sync>;

/// `test run`, executing on machines from a provider.
struct TestRun {
    provider: Arc<dyn MachineProvider>,
    /// Told of each run line before it executes.
    line_hook: Option<ProgressHook>,
    /// The report of the last `run_target` call, for the runner.
    report: Mutex<Option<RunReport>>,
}

/// The `run` kind for a `test run` line, executing on `provider`'s machines.
pub fn subtest(
    command: &TestCommand,
    provider: Arc<dyn MachineProvider>,
    line_hook: Option<ProgressHook>,
) -> anyhow::Result<Box<dyn SubTest>> {
    set_flags(command, &mut [])?;
    Ok(Box::new(TestRun {
        provider,
        line_hook,
        report: Mutex::new(None),
    }))
}

/// A run or print line with its place in the file.
struct RunLine {
    line: usize,
    /// The function the line is attached to: what it calls, as upstream's
    /// runner does (a bare `; run` names it `%default`).
    function: String,
    command: RunCommand,
}

impl SubTest for TestRun {
    /// The functions are verified when they are compiled, with the flags
    /// this runner forces (`preserve_frame_pointers`, which exception run
    /// tests need for `get_frame_pointer`), not with the file's own flags.
    fn facts(&self) -> KindFacts {
        KindFacts::new("run").unverified().per_target()
    }

    fn run_target(&self, file: &SourceFile, target: FlagsOrIsa) -> anyhow::Result<()> {
        let isa = target.isa.context("`test run` needs a target")?;
        let report = self.run_on(file.testfile, file.path, file.text, isa)?;
        let failed = report.failures.len();
        *self
            .report
            .lock()
            .map_err(|_| anyhow::anyhow!("run report poisoned"))? = Some(report);
        if failed > 0 {
            bail!("{failed} run line(s) failed");
        }
        Ok(())
    }

    fn run(&self, _func: Cow<Function>, _context: &Context) -> anyhow::Result<()> {
        bail!("`test run` runs whole files (through run_target)")
    }

    fn take_run_report(&self) -> Option<RunReport> {
        self.report.lock().ok().and_then(|mut r| r.take())
    }

    fn take_printed(&self) -> Vec<Printed> {
        self.report
            .lock()
            .ok()
            .and_then(|mut r| r.as_mut().map(|r| std::mem::take(&mut r.printed)))
            .unwrap_or_default()
    }
}

impl TestRun {
    fn run_on(
        &self,
        testfile: &TestFile,
        file_path: &str,
        source: &str,
        isa: &dyn TargetIsa,
    ) -> anyhow::Result<RunReport> {
        let mut report = RunReport {
            mode: "-".into(),
            ..Default::default()
        };
        let runs = run_lines(testfile, file_path, source)?;
        report.lines = runs.len();
        let Some(arch) = Arch::from_triple(isa.triple()) else {
            report.skipped = Some(format!("{} is not a supported target", isa.triple()));
            return Ok(report);
        };
        let kind = self.provider.kind_for_isa(arch, isa);
        report.mode = kind.name().into();
        if let Some(reason) = self.provider.unsupported(isa) {
            report.skipped = Some(reason);
            return Ok(report);
        }
        let isa = rebuild(arch, isa)?;
        let functions: Vec<Function> = testfile.functions.iter().map(|(f, _)| f.clone()).collect();
        let module = self
            .provider
            .machine(arch, kind)
            .and_then(|m| Module::new(m, isa.as_ref(), functions));
        let mut module = match module {
            Ok(module) => module,
            // Upstream compiles run tests only for the host, so a Cranelift
            // panic on another target is not a verdict it gives: skip the
            // target, naming the panic. On the host it stays a failure.
            Err(Error::CompilerPanic { function, message }) if !kind.is_native() => {
                report.skipped = Some(format!(
                    "Cranelift panicked compiling {function} for {arch} (not run upstream): {message}"
                ));
                return Ok(report);
            }
            Err(e) => {
                let line = match &e {
                    Error::Compile { function, .. }
                    | Error::Link { function, .. }
                    | Error::CompilerPanic { function, .. } => testfile
                        .functions
                        .iter()
                        .find(|(f, _)| f.name.to_string() == *function)
                        .map_or(0, |(_, d)| d.location.line_number),
                    _ => 0,
                };
                report.failures.push(RunFailure {
                    line,
                    invocation: "building the module".into(),
                    expected: "compiles, links and loads".into(),
                    actual: e.to_string(),
                });
                return Ok(report);
            }
        };
        if let Some(reason) = self.unsupported_code(arch, kind, &module) {
            report.skipped = Some(reason);
            return Ok(report);
        }
        for run in &runs {
            if let Some(hook) = &self.line_hook {
                hook(Progress::Line {
                    line: run.line,
                    emulated: !kind.is_native(),
                });
            }
            run_line(&mut module, run, &mut report);
        }
        Ok(report)
    }
}

impl TestRun {
    /// The provider's reason not to run the module's code: the first
    /// function (in address order) that has one.
    fn unsupported_code(&self, arch: Arch, kind: MachineKind, module: &Module) -> Option<String> {
        let image = module.image();
        image.table.functions().iter().find_map(|f| {
            let start = usize::try_from(f.start.checked_sub(image.base)?).ok()?;
            let end = usize::try_from(f.end.checked_sub(image.base)?).ok()?;
            let code = image.code.get(start..end)?;
            self.provider.unsupported_code(arch, kind, code)
        })
    }
}

/// The ISA of a `target` line with the flags the linker and unwinder need
/// forced on (`preserve_frame_pointers`, `unwind_info`).
fn rebuild(arch: Arch, isa: &dyn TargetIsa) -> anyhow::Result<OwnedTargetIsa> {
    build_isa(arch, isa.flags(), &isa.isa_flags()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Every `; run:` and `; print:` line of the file, with its line number.
fn run_lines(testfile: &TestFile, file_path: &str, source: &str) -> anyhow::Result<Vec<RunLine>> {
    // The reader keeps no line numbers for comments; find them in the text,
    // in file order after each function's `function` line.
    let lines: Vec<&str> = source.lines().collect();
    let mut runs = Vec::new();
    for (func, details) in &testfile.functions {
        let mut search_from = details.location.line_number.saturating_sub(1);
        for comment in &details.comments {
            let wanted = comment.text.trim();
            let found = (search_from..lines.len()).find(|&i| lines[i].trim() == wanted);
            let line = found.map_or(details.location.line_number, |i| {
                search_from = i + 1;
                i + 1
            });
            let command = parse_run_command(comment.text, &func.signature)
                .map_err(|e| anyhow::anyhow!("{file_path}:{line}: {}", e.message))?;
            if let Some(command) = command {
                runs.push(RunLine {
                    line,
                    function: func.name.to_string(),
                    command,
                });
            }
        }
    }
    Ok(runs)
}

fn run_line(module: &mut Module, run: &RunLine, report: &mut RunReport) {
    let (invocation, expectation) = match &run.command {
        RunCommand::Print(inv) => (inv, None),
        RunCommand::Run(inv, cmp, expected) => (inv, Some((cmp, expected))),
    };
    let shown = show_invocation(&invocation.func, &invocation.args);
    let fail = |report: &mut RunReport, expected: String, actual: String| {
        report.failures.push(RunFailure {
            line: run.line,
            invocation: shown.clone(),
            expected,
            actual,
        })
    };
    let expected_text = match expectation {
        None => "returns".to_string(),
        Some((cmp, values)) => format!("{cmp} {}", show_values(values)),
    };
    // Like upstream, call the function the line is attached to (its
    // signature typed the arguments), whatever name the line gives: the
    // corpus has lines whose name is stale, and upstream passes them.
    let actual = match module.call(&run.function, &invocation.args) {
        Ok(values) => values,
        Err(e) => {
            fail(report, expected_text, e.to_string());
            return;
        }
    };
    match expectation {
        None => {
            report.printed.push(Printed {
                line: run.line,
                text: format!("{shown} -> {}", show_values(&actual)),
            });
            report.passed += 1;
        }
        Some((cmp, expected)) => {
            let equal = actual.len() == expected.len()
                && actual.iter().zip(expected).all(|(a, b)| a.bitwise_eq(b));
            let ok = match cmp {
                Comparison::Equals => equal,
                Comparison::NotEquals => !equal,
            };
            if ok {
                report.passed += 1;
            } else {
                fail(report, expected_text, show_values(&actual));
            }
        }
    }
}

/// Why the host CPU cannot run code for `isa` (an ISA flag it lacks), or
/// `None` when it can; for a [`MachineProvider`] running the host natively.
/// Like upstream's runner, only enabled boolean flags are checked.
pub fn host_unsupported(isa: &dyn TargetIsa) -> Option<String> {
    for value in isa.isa_flags() {
        if value.as_bool() != Some(true) {
            continue;
        }
        if host_has(value.name) == Some(false) {
            return Some(format!("the host CPU lacks `{}`", value.name));
        }
    }
    None
}

/// Whether the host CPU has the feature behind a Cranelift ISA flag; `None`
/// for flags that are not CPU features (or not for this host).
#[cfg(target_arch = "x86_64")]
fn host_has(flag: &str) -> Option<bool> {
    Some(match flag {
        "has_sse3" => std::arch::is_x86_feature_detected!("sse3"),
        "has_ssse3" => std::arch::is_x86_feature_detected!("ssse3"),
        "has_sse41" => std::arch::is_x86_feature_detected!("sse4.1"),
        "has_sse42" => std::arch::is_x86_feature_detected!("sse4.2"),
        "has_popcnt" => std::arch::is_x86_feature_detected!("popcnt"),
        "has_avx" => std::arch::is_x86_feature_detected!("avx"),
        "has_avx2" => std::arch::is_x86_feature_detected!("avx2"),
        "has_fma" => std::arch::is_x86_feature_detected!("fma"),
        "has_bmi1" => std::arch::is_x86_feature_detected!("bmi1"),
        "has_bmi2" => std::arch::is_x86_feature_detected!("bmi2"),
        "has_lzcnt" => std::arch::is_x86_feature_detected!("lzcnt"),
        "has_cmpxchg16b" => std::arch::is_x86_feature_detected!("cmpxchg16b"),
        "has_avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
        "has_avx512dq" => std::arch::is_x86_feature_detected!("avx512dq"),
        "has_avx512vl" => std::arch::is_x86_feature_detected!("avx512vl"),
        "has_avx512bitalg" => std::arch::is_x86_feature_detected!("avx512bitalg"),
        "has_avx512vbmi" => std::arch::is_x86_feature_detected!("avx512vbmi"),
        "has_avx512vnni" => std::arch::is_x86_feature_detected!("avx512vnni"),
        "has_avx_vnni" => std::arch::is_x86_feature_detected!("avxvnni"),
        _ => return None,
    })
}

/// Whether the host CPU has the feature behind a Cranelift ISA flag; `None`
/// for flags that are not CPU features (or not for this host).
#[cfg(target_arch = "aarch64")]
fn host_has(flag: &str) -> Option<bool> {
    Some(match flag {
        "has_lse" => std::arch::is_aarch64_feature_detected!("lse"),
        "has_pauth" => std::arch::is_aarch64_feature_detected!("paca"),
        "has_fp16" => std::arch::is_aarch64_feature_detected!("fp16"),
        "has_dotprod" => std::arch::is_aarch64_feature_detected!("dotprod"),
        "has_i8mm" => std::arch::is_aarch64_feature_detected!("i8mm"),
        _ => return None,
    })
}

/// Whether the host CPU has the feature behind a Cranelift ISA flag: not
/// known on this host.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn host_has(_flag: &str) -> Option<bool> {
    None
}

/// How many `; run:` and `; print:` lines the file has (for the counts of
/// targets that are skipped before their lines are parsed for execution).
pub fn count_run_lines(testfile: &TestFile) -> usize {
    testfile
        .functions
        .iter()
        .map(|(func, details)| {
            details
                .comments
                .iter()
                .filter(|c| matches!(parse_run_command(c.text, &func.signature), Ok(Some(_))))
                .count()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cranelift_exn::machine::{HostFunction, HostServices, Machine};
    use cranelift_exn::native::NativeMachine;
    use cranelift_reader::{IsaSpec, ParseOptions, parse_test};

    /// A machine for another architecture that accepts code but cannot run
    /// it: enough to compile, link and load a module.
    struct LoadOnly {
        arch: Arch,
        next: u64,
    }

    impl Machine for LoadOnly {
        fn arch(&self) -> Arch {
            self.arch
        }

        fn allocate_code(&mut self, size: usize) -> Result<u64, Error> {
            let base = self.next;
            self.next += (size as u64).next_multiple_of(16);
            Ok(base)
        }

        unsafe fn install_code(&mut self, _: u64, _: &[u8]) -> Result<(), Error> {
            Ok(())
        }

        fn host_function_address(&mut self, function: HostFunction) -> Result<u64, Error> {
            Ok(0x1000 + 16 * function as u64)
        }

        unsafe fn call_entry(
            &self,
            _: u64,
            _: u64,
            _: &mut [u8],
            _: &mut dyn HostServices,
        ) -> Result<(), Error> {
            Err(Error::Machine("load-only machine".into()))
        }
    }

    /// A provider with a chosen mode and an optional verdict on compiled
    /// code; its machines are native for the host, load-only otherwise.
    struct Mock {
        kind: MachineKind,
        reject_code: bool,
    }

    impl MachineProvider for Mock {
        fn machine(&self, arch: Arch, _: MachineKind) -> Result<Box<dyn Machine>, Error> {
            if Some(arch) == Arch::host() {
                Ok(Box::new(NativeMachine::new()?))
            } else {
                Ok(Box::new(LoadOnly {
                    arch,
                    next: 0x10_0000,
                }))
            }
        }

        fn kind(&self, _: Arch) -> MachineKind {
            self.kind
        }

        fn unsupported_code(&self, arch: Arch, _: MachineKind, code: &[u8]) -> Option<String> {
            self.reject_code
                .then(|| format!("{arch}: code of {} bytes rejected", code.len()))
        }
    }

    /// Run `text` (written to a file, as the runner reads run lines from
    /// it) for its first target on `provider`.
    fn run(text: &str, name: &str, provider: Mock) -> anyhow::Result<RunReport> {
        let path =
            std::env::temp_dir().join(format!("clif-exn-run-{}-{name}.clif", std::process::id()));
        std::fs::write(&path, text)?;
        let testfile =
            parse_test(text, ParseOptions::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let IsaSpec::Some(isas) = &testfile.isa_spec else {
            bail!("no target");
        };
        let test = TestRun {
            provider: Arc::new(provider),
            line_hook: None,
            report: Mutex::new(None),
        };
        let report = test.run_on(&testfile, &path.to_string_lossy(), text, isas[0].as_ref());
        let _ = std::fs::remove_file(&path);
        report
    }

    /// Padding every block to 4 MiB puts the handler block out of reach of
    /// the `adr` that `get_exception_handler_address` becomes on aarch64 (1
    /// MiB): Cranelift 0.135.8 asserts while emitting `%f`.
    const PADDED: &str = "test run\n\
        set bb_padding_log2_minus_one=21\n\
        target aarch64\n\
        \n\
        function %g() tail {\n\
        block0:\n\
        \x20   return\n\
        }\n\
        \n\
        function %f() -> i64 {\n\
        \x20   sig0 = () tail\n\
        \x20   fn0 = %g() tail\n\
        block0:\n\
        \x20   v0 = get_exception_handler_address.i64 block1, 0\n\
        \x20   jump block1\n\
        block1:\n\
        \x20   try_call fn0(), sig0, block2(), [ default: block3(exn0) ]\n\
        block2:\n\
        \x20   return v0\n\
        block3(v1: i64):\n\
        \x20   return v1\n\
        }\n\
        ; run: %f() != 0\n";

    #[test]
    fn a_cranelift_panic_skips_an_emulated_target_with_the_message() {
        let provider = Mock {
            kind: MachineKind::Emulated,
            reject_code: false,
        };
        let report = run(PADDED, "panic-emulated", provider).unwrap();
        let reason = report
            .skipped
            .clone()
            .unwrap_or_else(|| panic!("not skipped: {report:?}"));
        assert!(
            reason.starts_with("Cranelift panicked compiling ")
                && reason.contains(" for aarch64 (not run upstream)"),
            "{reason}"
        );
        assert!(reason.contains("max_pos_range"), "{reason}");
        assert_eq!(
            (report.passed, report.failures.len(), report.lines),
            (0, 0, 1)
        );
    }

    #[test]
    fn a_cranelift_panic_on_a_native_target_is_not_hidden() {
        let provider = Mock {
            kind: MachineKind::Native,
            reject_code: false,
        };
        let report = run(PADDED, "panic-native", provider).unwrap();
        assert_eq!(report.skipped, None);
        assert_eq!(report.failures.len(), 1);
        let failure = &report.failures[0];
        assert!(failure.actual.contains("Cranelift panicked"), "{failure:?}");
        assert!(failure.actual.contains("max_pos_range"), "{failure:?}");
        // The function that did not compile, by its line.
        assert_eq!(failure.line, 10, "{failure:?}");
    }

    /// A host-target file, so that the module really loads and runs.
    fn host_file() -> Option<String> {
        let host = Arch::host()?;
        Some(format!(
            "test run\ntarget {host}\n\nfunction %seven() -> i64 {{\nblock0:\n    v0 = iconst.i64 7\n    return v0\n}}\n; run: %seven() == 7\n"
        ))
    }

    #[test]
    fn code_the_provider_rejects_skips_the_target_and_other_code_runs() {
        let Some(text) = host_file() else { return };
        let rejecting = Mock {
            kind: MachineKind::Native,
            reject_code: true,
        };
        let report = run(&text, "reject", rejecting).unwrap();
        let reason = report.skipped.expect("skipped");
        assert!(reason.contains("bytes rejected"), "{reason}");
        assert_eq!(report.passed, 0);
        let accepting = Mock {
            kind: MachineKind::Native,
            reject_code: false,
        };
        let report = run(&text, "accept", accepting).unwrap();
        assert_eq!((report.skipped, report.passed), (None, 1));
    }
}
