//! One file: parse it as upstream's runner does, build its test kinds, and
//! run each `(test, flags, target)` combination, the verifier first where a
//! kind needs it.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use cranelift_codegen::isa::TargetIsa;
use cranelift_codegen::print_errors::pretty_verifier_error;
use cranelift_codegen::settings::{Flags, FlagsOrIsa};
use cranelift_codegen::verify_function;
use cranelift_exn::error::panic_message;
use cranelift_reader::{Feature, IsaSpec, ParseOptions, TestFile, parse_test};

use serde::{Deserialize, Serialize};

use crate::bless::FileUpdate;
use crate::kinds::{RunEnv, new_subtest};
use crate::run::Progress;
use crate::subtest::{Printed, RunReport, SourceFile, SubTest};

/// How a file, or one test of it, ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Everything checked passed.
    Passed,
    /// Something failed; the message says what and where.
    Failed(String),
    /// Not run, for this reason.
    Skipped(String),
}

/// One test kind on one target (or once, for kinds without a target).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestResult {
    /// The kind, as written after `test` (`compile`, `run`, ...).
    pub kind: String,
    /// The `target` line's text without `target`, when the kind runs per
    /// target.
    pub target: Option<String>,
    /// What happened.
    pub status: Status,
    /// For `test run`: what was executed on this target.
    pub run: Option<RunReport>,
    /// Output of the `; print:` lines, in file order.
    pub printed: Vec<Printed>,
    /// Where the result goes among the file's: (test, target) in the order
    /// they run, so that parts of a file run apart merge back in order.
    pub order: (usize, usize),
}

/// Which part of a file to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part {
    /// Everything.
    Whole,
    /// Everything except `test run` on the targets after the first, which
    /// are left for [`Part::RunTarget`] runs (listed in
    /// [`FileReport::deferred`]): a slow file's targets can run in parallel.
    Main,
    /// `test run` on the target with this index only.
    RunTarget(usize),
}

/// A file's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Something passed and nothing failed.
    Passed,
    /// Something failed.
    Failed,
    /// Nothing ran: every test was skipped (or the file was).
    Skipped,
}

/// Everything that happened to one file (or one part of it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileReport {
    /// The file.
    #[serde(skip)]
    pub path: PathBuf,
    /// Time spent on it.
    pub elapsed: Duration,
    /// A problem with the file as a whole (unreadable, malformed, an unknown
    /// test kind or option, a panic), as `path:line: message` where the line
    /// is known.
    pub file_error: Option<String>,
    /// Why the whole file was skipped (a parser warning, as upstream), and
    /// the line the reason is about (0 when none).
    pub skipped: Option<(usize, String)>,
    /// Per test kind and target, in the order they ran.
    pub results: Vec<TestResult>,
    /// Targets (indices) whose `test run` was left for separate runs
    /// ([`Part::Main`]) and not announced to a progress hook
    /// ([`crate::run::Progress::Deferred`]).
    pub deferred: Vec<usize>,
    /// Panics caught while the file ran, where and what (with a backtrace
    /// when `RUST_BACKTRACE` asked for one), in a process that records them
    /// ([`crate::panics::record_panics`]); empty in any other.
    #[serde(default)]
    pub panics: Vec<String>,
}

impl FileReport {
    /// An empty report for `path`.
    pub fn new(path: &Path) -> Self {
        FileReport {
            path: path.to_path_buf(),
            elapsed: Duration::ZERO,
            file_error: None,
            skipped: None,
            results: Vec::new(),
            deferred: Vec::new(),
            panics: Vec::new(),
        }
    }

    /// Whether anything in the file failed.
    pub fn failed(&self) -> bool {
        self.verdict() == Verdict::Failed
    }

    /// The file's verdict: failed when anything failed, passed when
    /// something passed, skipped when nothing ran.
    pub fn verdict(&self) -> Verdict {
        if self.file_error.is_some()
            || self
                .results
                .iter()
                .any(|r| matches!(r.status, Status::Failed(_)))
        {
            Verdict::Failed
        } else if self.skipped.is_none() && self.results.iter().any(|r| r.status == Status::Passed)
        {
            Verdict::Passed
        } else {
            Verdict::Skipped
        }
    }

    /// Add the report of another part of the same file, keeping results in
    /// the order they would have run in one go.
    pub fn merge(&mut self, other: FileReport) {
        self.elapsed += other.elapsed;
        if self.file_error.is_none() {
            self.file_error = other.file_error;
        }
        self.results.extend(other.results);
        self.results.sort_by_key(|r| r.order);
        self.panics.extend(other.panics);
    }
}

/// Run one file with the kinds `env` provides.
pub fn run_file(path: &Path, env: &RunEnv) -> FileReport {
    run_part(path, Part::Whole, env)
}

/// Run `part` of one file with the kinds `env` provides.
pub fn run_part(path: &Path, part: Part, env: &RunEnv) -> FileReport {
    let start = Instant::now();
    let mut report = FileReport::new(path);
    // Panics recorded before this file are not its own.
    crate::panics::take();
    match std::fs::read(path) {
        Err(e) => report.file_error = Some(format!("{}: {e}", path.display())),
        Ok(bytes) => match String::from_utf8(bytes) {
            Err(e) => report.file_error = Some(format!("{}: not UTF-8 text: {e}", path.display())),
            Ok(text) => {
                // Cranelift panics on some input its verifier accepts; one
                // file must never take the others down with it.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_text(&text, path, part, env, &mut report)
                }));
                if let Err(panic) = outcome {
                    let message = panic_message(&*panic);
                    report.file_error = Some(format!("{}: panic: {message}", path.display()));
                }
            }
        },
    }
    report.panics = crate::panics::take();
    report.elapsed = start.elapsed();
    report
}

/// The target lines of a file, paired with the ISAs the reader built for
/// them. The reader silently drops targets Cranelift was built without
/// (pulley), so pairing goes by architecture.
fn pair_targets<'t>(text: &str, isa_spec: &'t IsaSpec) -> Vec<(String, Option<&'t dyn TargetIsa>)> {
    let mut isas: &[_] = match isa_spec {
        IsaSpec::Some(isas) => isas,
        IsaSpec::None(_) => &[],
    };
    let mut paired = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        // Targets come before the first function; stop there.
        if line.starts_with("function") {
            break;
        }
        let Some(rest) = line.strip_prefix("target") else {
            continue;
        };
        if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
            continue;
        }
        let rest = rest.trim().to_string();
        let word = rest.split_whitespace().next().unwrap_or("");
        let arch = target_lexicon::Triple::from_str(word)
            .ok()
            .map(|t| t.architecture);
        match isas.first() {
            Some(isa) if Some(isa.triple().architecture) == arch => {
                paired.push((rest, Some(&**isa)));
                isas = &isas[1..];
            }
            _ => paired.push((rest, None)),
        }
    }
    // Anything left unpaired still runs, labelled by its ISA's name.
    for isa in isas {
        paired.push((isa.name().to_string(), Some(&**isa)));
    }
    paired
}

fn run_text(text: &str, path: &Path, part: Part, env: &RunEnv, report: &mut FileReport) {
    let shown = path.display().to_string();
    let options = ParseOptions {
        machine_code_cfg_info: true,
        ..ParseOptions::default()
    };
    // Entity numbers the reader would allocate gigabytes for abort it.
    let parsed = cranelift_exn::clif_text::check_entity_numbers(text)
        .and_then(|()| parse_test(text, options));
    let testfile = match parsed {
        Ok(testfile) => testfile,
        Err(e) if e.is_warning => {
            report.skipped = Some((e.location.line_number, e.message));
            return;
        }
        Err(e) => {
            report.file_error = Some(format!("{shown}:{}: {}", e.location.line_number, e.message));
            return;
        }
    };
    if let Some(feature) = testfile.features.first() {
        let name = match feature {
            Feature::With(name) | Feature::Without(name) => name,
        };
        report.file_error = Some(format!("{shown}: unknown feature flag `{name}`"));
        return;
    }
    if testfile.functions.is_empty() {
        report.file_error = Some(format!("{shown}: no functions found"));
        return;
    }

    let mut tests: Vec<(String, Box<dyn SubTest>)> = Vec::new();
    for command in &testfile.commands {
        if matches!(part, Part::RunTarget(_)) && command.command != "run" {
            continue;
        }
        match new_subtest(command, env) {
            Ok(Some(test)) => tests.push((command.command.to_string(), test)),
            Ok(None) => report.results.push(TestResult {
                kind: command.command.to_string(),
                target: None,
                status: Status::Skipped(match command.command {
                    "run" => "run tests are not executed (--no-run)".to_string(),
                    kind => format!("`test {kind}` is not supported by this runner"),
                }),
                run: None,
                printed: Vec::new(),
                order: (0, 0),
            }),
            Err(e) => {
                let command = command.to_string();
                report.file_error = Some(format!(
                    "{shown}: `test {}`: {}",
                    command.trim_end(),
                    format!("{e:#}").trim_end()
                ));
                return;
            }
        }
    }
    if tests.is_empty() && report.results.is_empty() {
        report.file_error = Some(format!("{shown}: no test commands found"));
        return;
    }

    // Flags for kinds that need no target: those of the `set` lines (after
    // the last target's, when there are targets).
    let no_isa_flags: &Flags = match &testfile.isa_spec {
        IsaSpec::None(flags) => flags,
        IsaSpec::Some(isas) => match isas.last() {
            Some(isa) => isa.flags(),
            None => {
                report.file_error = Some(format!("{shown}: empty target list"));
                return;
            }
        },
    };
    // As upstream: kinds that need no verifier first, mutating kinds last.
    tests.sort_by_key(|(_, t)| (t.is_mutating(), t.needs_verifier()));
    let targets = pair_targets(text, &testfile.isa_spec);
    let file_update = FileUpdate::new(path);
    // Whether the functions passed the verifier, per target (index into
    // `targets`, or `targets.len()` for the target-less flags).
    let mut verified: Vec<Option<Result<(), String>>> = vec![None; targets.len() + 1];
    let progress = |kind: &str, target: Option<&str>| {
        if let Some(hook) = &env.progress {
            hook(Progress::Test { kind, target });
        }
    };
    let file = SourceFile {
        testfile: &testfile,
        update: &file_update,
        path: &shown,
        text,
    };
    // The main part leaves `test run` on every target after the first to
    // runs of their own. With a progress hook they are announced now (and
    // not in the report): a part that hangs or crashes later does not take
    // them with it.
    let mut deferred = Vec::new();
    if part == Part::Main
        && tests
            .iter()
            .any(|(kind, test)| kind == "run" && test.needs_isa())
    {
        deferred = (1..targets.len())
            .filter(|&index| targets[index].1.is_some())
            .collect();
        match &env.progress {
            Some(hook) if !deferred.is_empty() => hook(Progress::Deferred { targets: &deferred }),
            _ => report.deferred.clone_from(&deferred),
        }
    }

    for (test_index, (kind, test)) in tests.iter().enumerate() {
        let test_index = test_index + 1;
        if test.needs_isa() {
            if targets.is_empty() {
                report.file_error = Some(format!("{shown}: test {kind} requires a target"));
                return;
            }
            for (index, (label, isa)) in targets.iter().enumerate() {
                let order = (test_index, index);
                match part {
                    Part::RunTarget(wanted) if wanted != index => continue,
                    Part::Main if kind == "run" && deferred.contains(&index) => continue,
                    _ => {}
                }
                let Some(isa) = *isa else {
                    let reason = format!(
                        "Cranelift is built without target `{}`",
                        label.split_whitespace().next().unwrap_or("")
                    );
                    let run = (test.name() == "run").then(|| RunReport {
                        mode: "-".into(),
                        skipped: Some(reason.clone()),
                        lines: crate::run::count_run_lines(&testfile),
                        ..Default::default()
                    });
                    report.results.push(TestResult {
                        kind: kind.clone(),
                        target: Some(label.clone()),
                        status: Status::Skipped(reason),
                        run,
                        printed: Vec::new(),
                        order,
                    });
                    continue;
                };
                progress(kind, Some(label));
                let status =
                    run_tuple(&**test, &file, isa.flags(), Some(isa), &mut verified[index]);
                let printed = test.take_printed();
                let run = test.take_run_report();
                // A target the machine cannot serve is a skip, not a pass.
                let status = match (&status, run.as_ref().and_then(|r| r.skipped.as_ref())) {
                    (Status::Passed, Some(reason)) => Status::Skipped(reason.clone()),
                    _ => status,
                };
                report.results.push(TestResult {
                    kind: kind.clone(),
                    target: Some(label.clone()),
                    status,
                    run,
                    printed,
                    order,
                });
            }
        } else if let [(label, None)] = targets.as_slice() {
            // Upstream hands a file's only target to kinds that need none
            // (the verifier checks pointer widths against it); without that
            // target, the result would not be upstream's.
            report.results.push(TestResult {
                kind: kind.clone(),
                target: None,
                status: Status::Skipped(format!(
                    "Cranelift is built without target `{}`",
                    label.split_whitespace().next().unwrap_or("")
                )),
                run: None,
                printed: Vec::new(),
                order: (test_index, targets.len()),
            });
        } else {
            progress(kind, None);
            let status = run_tuple(
                &**test,
                &file,
                no_isa_flags,
                testfile.isa_spec.unique_isa(),
                &mut verified[targets.len()],
            );
            report.results.push(TestResult {
                kind: kind.clone(),
                target: None,
                status,
                printed: test.take_printed(),
                run: test.take_run_report(),
                order: (test_index, targets.len()),
            });
        }
    }
}

/// Verify (once per target) when the kind needs it, then run it.
fn run_tuple(
    test: &dyn SubTest,
    file: &SourceFile,
    flags: &Flags,
    isa: Option<&dyn TargetIsa>,
    verified: &mut Option<Result<(), String>>,
) -> Status {
    if test.needs_verifier() {
        let verdict = verified.get_or_insert_with(|| verify(file.testfile, flags, isa));
        if let Err(message) = verdict {
            return Status::Failed(message.clone());
        }
    }
    // A panic in Cranelift (on input its verifier accepts, or a backend
    // limit) fails this test and target only; the file's others still run.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        test.run_target(file, FlagsOrIsa { flags, isa })
    }));
    match outcome {
        Ok(Ok(())) => Status::Passed,
        Ok(Err(e)) => Status::Failed(format!("{e:#}")),
        Err(panic) => Status::Failed(format!("panic: {}", panic_message(&*panic))),
    }
}

fn verify(testfile: &TestFile, flags: &Flags, isa: Option<&dyn TargetIsa>) -> Result<(), String> {
    let fisa = FlagsOrIsa { flags, isa };
    for (func, details) in &testfile.functions {
        if let Err(errors) = verify_function(func, fisa) {
            return Err(format!(
                "function {} (line {}) fails the verifier:\n{}",
                func.name,
                details.location.line_number,
                pretty_verifier_error(func, None, errors)
            ));
        }
    }
    Ok(())
}
