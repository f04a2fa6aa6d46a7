//! `test run` filetests in upstream's format, executed on every `target`.
//!
//! A file's `; run:` and `; print:` comments attach to the function before
//! them. Each target line of the file gets its own [`Module`] on a machine
//! from a [`MachineProvider`] (native for the host, an emulator otherwise),
//! and every run line executes on each of them.

use std::fmt;
use std::path::{Path, PathBuf};

use cranelift_codegen::data_value::DataValue;
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings;
use cranelift_reader::{IsaSpec, ParseOptions, RunCommand, parse_run_command, parse_test};

use crate::compile::build_isa;
use crate::error::Error;
use crate::isa::Arch;
use crate::machine::Machine;
use crate::module::Module;

/// Supplies a machine for each architecture a file targets.
pub trait MachineProvider: Sync {
    /// A fresh machine for `arch`.
    fn machine(&self, arch: Arch) -> Result<Box<dyn Machine>, Error>;
    /// How `arch` runs: `native` or `emulated`.
    fn mode(&self, arch: Arch) -> &'static str;
}

/// One run line that did not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// 1-based line of the run line (or of the function / file problem).
    pub line: usize,
    /// The target line's text (`x86_64`, `aarch64 has_pauth`, …).
    pub target: String,
    /// The invocation (`%f(1, 2)`), or what was being done.
    pub invocation: String,
    /// What the file expects.
    pub expected: String,
    /// What happened.
    pub actual: String,
}

/// Results of one target of one file.
#[derive(Clone, Debug, Default)]
pub struct TargetReport {
    /// The target line's text.
    pub target: String,
    /// The architecture, when the target is one of the four.
    pub arch: Option<Arch>,
    /// `native` or `emulated`.
    pub mode: &'static str,
    /// Run lines that passed.
    pub passed: usize,
    /// Run and print lines that failed.
    pub failures: Vec<Failure>,
    /// Output of `; print:` lines (`file:line: [target] %f() -> values`).
    pub printed: Vec<String>,
    /// Why the whole target was skipped, if it was.
    pub skipped: Option<String>,
}

/// Results of one file.
#[derive(Clone, Debug)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Per target, in the order of the file's `target` lines.
    pub targets: Vec<TargetReport>,
    /// A problem with the whole file (unreadable, malformed): its failure.
    pub file_failure: Option<Failure>,
    /// Why the whole file was skipped (not a `test run` file).
    pub skipped: Option<String>,
    /// Wall time spent on the file.
    pub elapsed: std::time::Duration,
}

impl FileReport {
    /// Whether anything in the file failed.
    pub fn failed(&self) -> bool {
        self.file_failure.is_some() || self.targets.iter().any(|t| !t.failures.is_empty())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {}\n    expected: {}\n    actual:   {}",
            self.target, self.invocation, self.expected, self.actual
        )
    }
}

/// Run one file.
pub fn run_file(path: &Path, provider: &dyn MachineProvider) -> FileReport {
    let start = std::time::Instant::now();
    let mut report = FileReport {
        path: path.to_path_buf(),
        targets: Vec::new(),
        file_failure: None,
        skipped: None,
        elapsed: Default::default(),
    };
    match std::fs::read_to_string(path) {
        Err(e) => {
            report.file_failure = Some(Failure {
                line: 0,
                target: "-".into(),
                invocation: "reading the file".into(),
                expected: "a readable CLIF file".into(),
                actual: e.to_string(),
            })
        }
        Ok(text) => {
            // Cranelift may panic on input its verifier does not reject; one
            // file must never take the others down with it.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_text(&text, provider)
            }));
            match outcome {
                Ok(Ok(Some(targets))) => report.targets = targets,
                Ok(Ok(None)) => report.skipped = Some("not a `test run` file".into()),
                Ok(Err(failure)) => report.file_failure = Some(failure),
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    report.file_failure = Some(Failure {
                        line: 0,
                        target: "-".into(),
                        invocation: "running the file".into(),
                        expected: "no panic".into(),
                        actual: format!("panic: {message}"),
                    });
                }
            }
        }
    }
    report.elapsed = start.elapsed();
    report
}

/// A run or print line with its place in the file.
struct RunLine {
    line: usize,
    /// The function the line is attached to: what it calls, as upstream's
    /// runner does (a bare `; run` names it `%default`).
    function: String,
    command: RunCommand,
}

/// Run the text of a file; `Ok(None)` when it is not a `test run` file.
pub fn run_text(
    text: &str,
    provider: &dyn MachineProvider,
) -> Result<Option<Vec<TargetReport>>, Failure> {
    let file_failure = |line: usize, invocation: &str, actual: String| Failure {
        line,
        target: "-".into(),
        invocation: invocation.into(),
        expected: "a well-formed file".into(),
        actual,
    };
    let test = parse_test(text, ParseOptions::default())
        .map_err(|e| file_failure(e.location.line_number, "parsing", e.message))?;
    if !test.commands.iter().any(|c| c.command == "run") {
        return Ok(None);
    }
    let lines: Vec<&str> = text.lines().collect();
    let target_lines: Vec<String> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("target ") || *l == "target")
        .map(|l| l.trim_start_matches("target").trim().to_string())
        .collect();

    // Each `; run:` comment, with its line: comments of a function appear in
    // file order after its `function` line.
    let mut runs = Vec::new();
    let mut functions = Vec::new();
    let mut function_lines = Vec::new();
    for (func, details) in &test.functions {
        let mut search_from = details.location.line_number.saturating_sub(1);
        for comment in &details.comments {
            let wanted = comment.text.trim();
            let found = (search_from..lines.len()).find(|&i| lines[i].trim() == wanted);
            let line = found.map_or(details.location.line_number, |i| {
                search_from = i + 1;
                i + 1
            });
            let command = parse_run_command(comment.text, &func.signature)
                .map_err(|e| file_failure(line, "parsing a run line", e.message))?;
            if let Some(command) = command {
                runs.push(RunLine {
                    line,
                    function: func.name.to_string(),
                    command,
                });
            }
        }
        function_lines.push((func.name.to_string(), details.location.line_number));
        functions.push(func.clone());
    }

    // The reader drops target lines it cannot build (pulley, say), so pair
    // lines and ISAs by architecture, and report the dropped ones as skipped.
    let isas: Vec<(String, Result<OwnedTargetIsa, Error>)> = match &test.isa_spec {
        IsaSpec::Some(isas) => {
            let mut built = isas.iter().peekable();
            let mut paired = Vec::new();
            for line in &target_lines {
                let word = line.split_whitespace().next().unwrap_or("");
                let next_matches = built.peek().is_some_and(|isa| {
                    Arch::from_triple(isa.triple()).map(Arch::name) == Some(word)
                });
                if next_matches {
                    let isa = built.next().expect("peeked");
                    paired.push((line.clone(), rebuild(isa.as_ref())));
                } else {
                    paired.push((
                        line.clone(),
                        Err(Error::Compile {
                            function: "<target>".into(),
                            message: format!(
                                "`{word}` is not one of x86_64, aarch64, riscv64, s390x"
                            ),
                        }),
                    ));
                }
            }
            paired
        }
        IsaSpec::None(flags) => match Arch::host() {
            Some(arch) => vec![(arch.name().to_string(), build_isa(arch, flags, &[]))],
            None => Vec::new(),
        },
    };

    let mut reports = Vec::new();
    for (target, isa) in isas {
        let mut report = TargetReport {
            target: target.clone(),
            mode: "-",
            ..Default::default()
        };
        let isa = match isa {
            Ok(isa) => isa,
            Err(e) => {
                report.skipped = Some(match e {
                    Error::Compile { message, .. } => message,
                    other => other.to_string(),
                });
                reports.push(report);
                continue;
            }
        };
        let Some(arch) = Arch::from_triple(isa.triple()) else {
            report.skipped = Some(format!("{} is not a supported target", isa.triple()));
            reports.push(report);
            continue;
        };
        report.arch = Some(arch);
        report.mode = provider.mode(arch);
        let module = provider
            .machine(arch)
            .and_then(|m| Module::new(m, isa.as_ref(), functions.clone()));
        let mut module = match module {
            Ok(module) => module,
            Err(e) => {
                let line = match &e {
                    Error::Compile { function, .. } | Error::Link { function, .. } => {
                        function_lines
                            .iter()
                            .find(|(n, _)| n == function)
                            .map_or(0, |(_, l)| *l)
                    }
                    _ => 0,
                };
                report.failures.push(Failure {
                    line,
                    target,
                    invocation: "building the module".into(),
                    expected: "compiles, links and loads".into(),
                    actual: e.to_string(),
                });
                reports.push(report);
                continue;
            }
        };
        for run in &runs {
            run_line(&mut module, run, &mut report);
        }
        reports.push(report);
    }
    Ok(Some(reports))
}

/// The ISA from a `target` line, with this crate's forced flags.
fn rebuild(isa: &dyn TargetIsa) -> Result<OwnedTargetIsa, Error> {
    let arch = Arch::from_triple(isa.triple()).ok_or_else(|| Error::Compile {
        function: "<target>".into(),
        message: format!("unsupported target {}", isa.triple()),
    })?;
    let shared: &settings::Flags = isa.flags();
    build_isa(arch, shared, &isa.isa_flags())
}

fn display_values(values: &[DataValue]) -> String {
    match values {
        [] => "[]".into(),
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn run_line(module: &mut Module, run: &RunLine, report: &mut TargetReport) {
    let (invocation, expectation) = match &run.command {
        RunCommand::Print(inv) => (inv, None),
        RunCommand::Run(inv, cmp, expected) => (inv, Some((cmp, expected))),
    };
    let named = format!("%{}", invocation.func);
    let shown = format!(
        "{named}({})",
        invocation
            .args
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let fail = |report: &mut TargetReport, expected: String, actual: String| {
        report.failures.push(Failure {
            line: run.line,
            target: report.target.clone(),
            invocation: shown.clone(),
            expected,
            actual,
        })
    };
    let expected_text = match expectation {
        None => "returns".to_string(),
        Some((cmp, values)) => format!("{cmp} {}", display_values(values)),
    };
    // Like upstream, call the function the line is attached to (its
    // signature typed the arguments); a name that is not `default` must
    // still exist in the file.
    if invocation.func != "default" && module.signature(&named).is_none() {
        fail(
            report,
            expected_text,
            format!("no function {named} in this file"),
        );
        return;
    }
    let name = &run.function;
    let result = module.call(name, &invocation.args);
    let actual = match result {
        Ok(values) => values,
        Err(e) => {
            fail(report, expected_text, e.to_string());
            return;
        }
    };
    match expectation {
        None => {
            report.printed.push(format!(
                "{}: [{}] {shown} -> {}",
                run.line,
                report.target,
                display_values(&actual)
            ));
            report.passed += 1;
        }
        Some((cmp, expected)) => {
            let equal = actual.len() == expected.len()
                && actual.iter().zip(expected).all(|(a, b)| a.bitwise_eq(b));
            let ok = match cmp {
                cranelift_reader::Comparison::Equals => equal,
                cranelift_reader::Comparison::NotEquals => !equal,
            };
            if ok {
                report.passed += 1;
            } else {
                fail(report, expected_text, display_values(&actual));
            }
        }
    }
}

/// Every `.clif` file under `path` (or `path` itself), sorted.
pub fn collect_files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::Machine(format!("{}: {e}", path.display())))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::Machine(format!("{}: {e}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::Machine(format!("{}: {e}", dir.display())))?;
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "clif") {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}
