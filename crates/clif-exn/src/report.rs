//! What `clif-exn test` prints: each file's failures (with `-v`, every
//! verdict) as soon as the file order allows, `; print:` output, a progress
//! line on a terminal, notices for long-running files, and the summary.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cranelift_exn_filetests::runone::{FileReport, Status, Verdict};

use crate::supervise::{Observer, PoolStatus, RunningInfo, Step};

#[derive(Default)]
struct Counts {
    passed: usize,
    failed: usize,
    skipped: usize,
}

impl Counts {
    fn show(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// Run lines of one architecture on one kind of machine.
struct TargetCounts {
    arch: String,
    mode: String,
    counts: Counts,
    reasons: BTreeMap<String, usize>,
}

/// After how long a running part gets its first notice (then at each
/// doubling), unless half the time limit is shorter.
const STALL_NOTICE: Duration = Duration::from_secs(10);

/// Runs longer than this get a progress line (on a terminal).
const PROGRESS_AFTER: Duration = Duration::from_secs(2);

/// Prints as files finish and sums up at the end.
pub struct Printer {
    verbose: bool,
    no_run: bool,
    /// When a running part gets its first STALLED notice.
    stall_notice: Duration,
    start: Instant,
    /// Whether to draw a progress line on standard error.
    terminal: bool,
    progress_drawn: bool,
    /// Notices given, per running file and test: how many.
    stalls: HashMap<(PathBuf, Option<Step>), u32>,
    files: Counts,
    total_files: usize,
    by_kind: BTreeMap<(String, String), Counts>,
    skip_reasons: BTreeMap<String, usize>,
    by_target: Vec<TargetCounts>,
    run_total: Counts,
}

impl Printer {
    /// A printer; `verbose` for `-v`, `no_run` for `--no-run`, `timeout`
    /// the limit on each step (notices come at half of it, or 10 s).
    pub fn new(verbose: bool, no_run: bool, timeout: Duration) -> Self {
        Printer {
            verbose,
            no_run,
            stall_notice: STALL_NOTICE.min(timeout / 2),
            start: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            progress_drawn: false,
            stalls: HashMap::new(),
            files: Counts::default(),
            total_files: 0,
            by_kind: BTreeMap::new(),
            skip_reasons: BTreeMap::new(),
            by_target: Vec::new(),
            run_total: Counts::default(),
        }
    }

    fn clear_progress(&mut self) {
        if self.progress_drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.progress_drawn = false;
        }
    }

    /// One file's lines (and its part of the counts).
    fn format(&mut self, report: &FileReport) -> String {
        let verbose = self.verbose;
        let mut text = String::new();
        let path = report.path.display();
        self.total_files += 1;
        if verbose {
            text += &format!("{path} ({:.3}s)\n", report.elapsed.as_secs_f64());
        }
        match report.verdict() {
            Verdict::Passed => self.files.passed += 1,
            Verdict::Failed => self.files.failed += 1,
            Verdict::Skipped => self.files.skipped += 1,
        }
        if let Some((line, reason)) = &report.skipped {
            *self
                .skip_reasons
                .entry(format!("file skipped: {reason}"))
                .or_default() += 1;
            if verbose {
                text += &format!("  skipped: {path}:{line}: {reason}\n");
            }
            return text;
        }
        if let Some(e) = &report.file_error {
            text += &format!("FAIL {e}\n");
        }
        for result in &report.results {
            let target = result.target.as_deref().unwrap_or("-");
            let arch = target.split_whitespace().next().unwrap_or("-").to_string();
            let counts = self
                .by_kind
                .entry((result.kind.clone(), arch.clone()))
                .or_default();
            match &result.status {
                Status::Passed => counts.passed += 1,
                Status::Failed(_) => counts.failed += 1,
                Status::Skipped(reason) => {
                    counts.skipped += 1;
                    *self.skip_reasons.entry(reason.clone()).or_default() += 1;
                }
            }
            let label = match &result.target {
                Some(t) => format!("{} [{t}]", result.kind),
                None => result.kind.clone(),
            };
            // `; print:` output, labelled like everything else.
            let print_label = result.target.as_deref().unwrap_or(&result.kind);
            for printed in &result.printed {
                text += &format!(
                    "PRINT {path}:{} [{print_label}] {}\n",
                    printed.line, printed.text
                );
            }
            if let Some(run) = &result.run {
                // One entry per architecture and machine kind (a target's
                // lines may run on unicorn or QEMU as their flags need); a
                // part without a kind (`-`: its worker died) joins any.
                let index = match self.by_target.iter().position(|t| {
                    t.arch == arch && (t.mode == run.mode || t.mode == "-" || run.mode == "-")
                }) {
                    Some(i) => i,
                    None => {
                        self.by_target.push(TargetCounts {
                            arch: arch.clone(),
                            mode: run.mode.clone(),
                            counts: Counts::default(),
                            reasons: BTreeMap::new(),
                        });
                        self.by_target.len() - 1
                    }
                };
                let entry = &mut self.by_target[index];
                if entry.mode == "-" {
                    entry.mode = run.mode.clone();
                }
                if let Some(reason) = &run.skipped {
                    entry.counts.skipped += run.lines;
                    self.run_total.skipped += run.lines;
                    *entry.reasons.entry(reason.clone()).or_default() += run.lines;
                    if verbose {
                        text += &format!("  SKIP [{target}]: {reason}\n");
                    }
                }
                entry.counts.passed += run.passed;
                entry.counts.failed += run.failures.len();
                self.run_total.passed += run.passed;
                self.run_total.failed += run.failures.len();
                for f in &run.failures {
                    text += &format!(
                        "FAIL {path}:{} [{target}] {}\n    expected: {}\n    actual:   {}\n",
                        f.line, f.invocation, f.expected, f.actual
                    );
                }
                match &result.status {
                    Status::Failed(message) if run.failures.is_empty() => {
                        text += &format!("FAIL {path} {label}:\n{}", indent(message));
                    }
                    Status::Passed if verbose => {
                        text += &format!(
                            "  {label}: passed ({} run line{}, {})\n",
                            run.passed,
                            if run.passed == 1 { "" } else { "s" },
                            run.mode
                        );
                    }
                    Status::Failed(_) if verbose => {
                        text += &format!(
                            "  {label}: failed ({} of {} run lines)\n",
                            run.failures.len(),
                            run.passed + run.failures.len()
                        );
                    }
                    _ => {}
                }
                continue;
            }
            match &result.status {
                Status::Failed(message) => {
                    text += &format!("FAIL {path} {label}:\n{}", indent(message));
                }
                Status::Skipped(reason) if verbose => {
                    text += &format!("  {label}: skipped: {reason}\n");
                }
                Status::Passed if verbose => text += &format!("  {label}: passed\n"),
                _ => {}
            }
        }
        // Where the panics behind the failures above happened (a skip for a
        // panic says so only with -v).
        if verbose || report.failed() {
            for panic in &report.panics {
                text += &format!("  panic at {}", indent(panic).trim_start());
            }
        }
        text
    }

    /// The summary; the exit status (1 when a file failed).
    pub fn finish(mut self) -> ExitCode {
        self.clear_progress();
        let mut s = String::new();
        s += &format!(
            "\n{} files: {}; {:.2}s\n",
            self.total_files,
            self.files.show(),
            self.start.elapsed().as_secs_f64()
        );
        if !self.by_kind.is_empty() {
            s += "tests by kind and target:\n";
            let kind_width = self.by_kind.keys().map(|(k, _)| k.len()).max().unwrap_or(0);
            let arch_width = self.by_kind.keys().map(|(_, a)| a.len()).max().unwrap_or(0);
            for ((kind, arch), counts) in &self.by_kind {
                s += &format!(
                    "  {kind:kind_width$} {arch:arch_width$} {}\n",
                    counts.show()
                );
            }
        }
        if !self.skip_reasons.is_empty() {
            s += "skipped tests:\n";
            for (reason, n) in &self.skip_reasons {
                s += &format!("  {n:5} × {reason}\n");
            }
        }
        if !self.by_target.is_empty() {
            s += "run lines by target:\n";
            let width = |column: fn(&TargetCounts) -> &str| {
                let widths = self.by_target.iter().map(|t| column(t).len());
                widths.max().unwrap_or(0)
            };
            let (arch_width, mode_width) = (width(|t| &t.arch), width(|t| &t.mode));
            for t in &self.by_target {
                s += &format!(
                    "  {:arch_width$} {:mode_width$} {}\n",
                    t.arch,
                    t.mode,
                    t.counts.show()
                );
                for (reason, n) in &t.reasons {
                    s += &format!("      {n:5} skipped: {reason}\n");
                }
            }
        }
        if self.no_run {
            s += "run: not executed (--no-run)\n";
        } else {
            s += &format!("run: {}\n", self.run_total.show());
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
        if self.files.failed > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    }
}

impl Observer for Printer {
    fn file_done(&mut self, report: FileReport) {
        let text = self.format(&report);
        if text.is_empty() {
            return;
        }
        self.clear_progress();
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(printable(&text).as_bytes());
        let _ = out.flush();
    }

    fn tick(&mut self, status: &PoolStatus) {
        // Notices for parts that run long: at 10 s, then at each doubling.
        for running in &status.running {
            let key = (running.path.to_path_buf(), running.test.cloned());
            let given = self.stalls.entry(key).or_default();
            let due = self.stall_notice * 2u32.saturating_pow(*given);
            if running.elapsed >= due {
                *given += 1;
                let place = place(running);
                self.clear_progress();
                let _ = writeln!(
                    std::io::stderr(),
                    "STALLED {place}: running for {:.1} s",
                    running.elapsed.as_secs_f64()
                );
            }
        }
        if !self.terminal || self.start.elapsed() < PROGRESS_AFTER {
            return;
        }
        let slowest = status.running.iter().max_by_key(|r| r.elapsed);
        let mut line = format!(
            "[{}/{} files, {:.0}s]",
            status.done,
            status.total,
            self.start.elapsed().as_secs_f64()
        );
        if let Some(r) = slowest {
            line += &format!(
                " {} running; longest: {} ({:.0}s)",
                status.running.len(),
                place(r),
                r.elapsed.as_secs_f64()
            );
        }
        let line: String = line.chars().take(110).collect();
        let _ = write!(std::io::stderr(), "\r\x1b[K{line}");
        self.progress_drawn = true;
    }
}

/// `path:line kind [target]` of what a worker is running.
fn place(running: &RunningInfo) -> String {
    let mut place = running.path.display().to_string();
    if let Some(line) = running.line {
        place += &format!(":{line}");
    }
    match running.test {
        Some((kind, Some(target))) => place += &format!(" {kind} [{target}]"),
        Some((kind, None)) => place += &format!(" {kind}"),
        None => {}
    }
    place
}

/// `text` with the control characters other than newline and tab that a
/// file's own lines, echoed in a report (a diff, a run line, an error),
/// may hold written as escapes (`\u{0}`), so that they reach the terminal
/// as text.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let shown = |c: char| !c.is_control() || c == '\n' || c == '\t';
    if text.chars().all(shown) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if shown(c) {
                c.to_string()
            } else {
                c.escape_unicode().to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// Indent every line of a message.
fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\tb\nc"), "a\tb\nc");
        assert_eq!(
            printable("mov\0q\r\x1b[2J é"),
            "mov\\u{0}q\\u{d}\\u{1b}[2J é"
        );
    }
}
