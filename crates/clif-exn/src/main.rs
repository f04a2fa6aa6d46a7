//! `clif-exn test`: Cranelift's filetests (the kinds and verdicts of
//! upstream's `clif-util test`), with `test run` executed on x86_64,
//! aarch64, riscv64 and s390x — natively for the host, emulated otherwise.

mod fuzz;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cranelift_exn::Error;
use cranelift_exn::codegen::isa::TargetIsa;
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::Machine;
use cranelift_exn::native::NativeMachine;
use cranelift_exn_emulator::EmulatedMachine;
use cranelift_exn_filetests::kinds::RunEnv;
use cranelift_exn_filetests::run::{MachineProvider, host_unsupported};
use cranelift_exn_filetests::runner::{collect_files, run_files};
use cranelift_exn_filetests::runone::{FileReport, Status};

const USAGE: &str = "\
usage: clif-exn test [-v] [-j N] [--no-run | --host-only] PATH...

Runs the Cranelift filetests in PATH (files, or directories searched for
*.clif), as upstream's `clif-util test` does. `test run` executes on every
`target` line: natively where the target is the host, in an emulator
otherwise. CRANELIFT_TEST_BLESS=1 rewrites `precise-output` expectations.

  -v, --verbose   print each file with its time, each test, `; print:` output
  -j N            run N files at once (default: number of CPUs)
  --no-run        do not execute `test run` (counted as skipped)
  --host-only     execute `test run` only for host targets, as upstream does
                  (other targets counted as skipped)
  -h, --help      this text

Exit status: 0 all passed, 1 a test failed, 2 bad usage.

       clif-exn fuzz [--seed N] [--count K] [--isa LIST] [-j N] [--out DIR]

Runs generated exception programs on every ISA against an oracle; see
`clif-exn fuzz --help`.";

/// Native machines for the host's architecture, emulated ones for the rest
/// (unless `host_only`).
struct Machines {
    host_only: bool,
}

impl MachineProvider for Machines {
    fn machine(&self, arch: Arch) -> Result<Box<dyn Machine>, Error> {
        if Some(arch) == Arch::host() {
            Ok(Box::new(NativeMachine::new()?))
        } else {
            Ok(Box::new(EmulatedMachine::new(arch)?))
        }
    }

    fn mode(&self, arch: Arch) -> &'static str {
        if Some(arch) == Arch::host() {
            "native"
        } else {
            "emulated"
        }
    }

    fn unsupported(&self, isa: &dyn TargetIsa) -> Option<String> {
        if Arch::from_triple(isa.triple()).is_some_and(|a| Some(a) == Arch::host()) {
            host_unsupported(isa)
        } else if self.host_only {
            Some("not the host (--host-only)".into())
        } else {
            cranelift_exn_emulator::unsupported_reason(isa)
        }
    }

    fn unsupported_code(&self, arch: Arch, code: &[u8]) -> Option<String> {
        if Some(arch) == Arch::host() {
            None
        } else {
            cranelift_exn_emulator::capabilities::unsupported_code(arch, code)
        }
    }
}

struct Options {
    verbose: bool,
    jobs: usize,
    no_run: bool,
    host_only: bool,
    paths: Vec<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        verbose: false,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        no_run: false,
        host_only: false,
        paths: Vec::new(),
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-v" | "--verbose" => options.verbose = true,
            "--no-run" => options.no_run = true,
            "--host-only" => options.host_only = true,
            "-j" => {
                let n = iter.next().ok_or("-j needs a number")?;
                options.jobs = n
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .ok_or_else(|| format!("-j needs a positive number, not `{n}`"))?;
            }
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown option `{flag}`"));
            }
            path => options.paths.push(PathBuf::from(path)),
        }
    }
    if options.paths.is_empty() {
        return Err("no PATH given".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Test-only: a deliberate unwinder bug, to show that a reproduction
    // written by `clif-exn fuzz` fails under it.
    if let Ok(name) = std::env::var("CRANELIFT_EXN_SABOTAGE") {
        match name.parse() {
            Ok(sabotage) => cranelift_exn::unwind::set_sabotage(Some(sabotage)),
            Err(e) => {
                eprintln!("clif-exn: CRANELIFT_EXN_SABOTAGE: {e}");
                return ExitCode::from(2);
            }
        }
    }
    match args.first().map(String::as_str) {
        Some("test") => {}
        Some("fuzz") => return fuzz::main(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("clif-exn: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
        None => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    if args[1..].iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse_args(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("clif-exn: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut files = Vec::new();
    for path in &options.paths {
        match collect_files(path) {
            Ok(found) => files.extend(found),
            Err(e) => {
                eprintln!("clif-exn: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let env = RunEnv {
        provider: (!options.no_run).then(|| {
            Arc::new(Machines {
                host_only: options.host_only,
            }) as Arc<dyn MachineProvider>
        }),
    };
    let start = Instant::now();
    let reports = run_files(&files, &env, options.jobs);
    print_reports(&reports, options.verbose, start.elapsed())
}

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

/// Indent every line of a message.
fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
}

/// Each file's failures (and, with `-v`, everything else), then the summary.
fn print_reports(reports: &[FileReport], verbose: bool, elapsed: Duration) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let mut files = Counts::default();
    // (kind, architecture) → counts of tests; reason → count of skips.
    let mut by_kind: BTreeMap<(String, String), Counts> = BTreeMap::new();
    let mut skip_reasons: BTreeMap<String, usize> = BTreeMap::new();
    // Run lines per architecture, in order of appearance.
    let mut by_target: Vec<(String, &'static str, Counts, BTreeMap<String, usize>)> = Vec::new();
    let mut run_total = Counts::default();
    let mut text = String::new();
    for report in reports {
        text.clear();
        let path = report.path.display();
        if verbose {
            text += &format!("{path} ({:.3}s)\n", report.elapsed.as_secs_f64());
        }
        if let Some(reason) = &report.skipped {
            files.skipped += 1;
            *skip_reasons.entry(format!("file: {reason}")).or_default() += 1;
            if verbose {
                text += &format!("  skipped: {reason}\n");
            }
            let _ = out.write_all(text.as_bytes());
            continue;
        }
        if report.failed() {
            files.failed += 1;
        } else {
            files.passed += 1;
        }
        if let Some(e) = &report.file_error {
            text += &format!("FAIL {e}\n");
        }
        for result in &report.results {
            let target = result.target.as_deref().unwrap_or("-");
            let arch = target.split_whitespace().next().unwrap_or("-").to_string();
            let counts = by_kind
                .entry((result.kind.clone(), arch.clone()))
                .or_default();
            match &result.status {
                Status::Passed => counts.passed += 1,
                Status::Failed(_) => counts.failed += 1,
                Status::Skipped(reason) => {
                    counts.skipped += 1;
                    *skip_reasons.entry(reason.clone()).or_default() += 1;
                }
            }
            let label = match &result.target {
                Some(t) => format!("{} [{t}]", result.kind),
                None => result.kind.clone(),
            };
            if let Some(run) = &result.run {
                let index = match by_target.iter().position(|(n, ..)| *n == arch) {
                    Some(i) => i,
                    None => {
                        by_target.push((
                            arch.clone(),
                            run.mode,
                            Counts::default(),
                            BTreeMap::new(),
                        ));
                        by_target.len() - 1
                    }
                };
                let entry = &mut by_target[index];
                if entry.1 == "-" {
                    entry.1 = run.mode;
                }
                if let Some(reason) = &run.skipped {
                    entry.2.skipped += run.lines;
                    run_total.skipped += run.lines;
                    *entry.3.entry(reason.clone()).or_default() += run.lines;
                    if verbose {
                        text += &format!("  SKIP [{target}]: {reason}\n");
                    }
                }
                entry.2.passed += run.passed;
                entry.2.failed += run.failures.len();
                run_total.passed += run.passed;
                run_total.failed += run.failures.len();
                for f in &run.failures {
                    text += &format!(
                        "FAIL {path}:{} [{target}] {}\n    expected: {}\n    actual:   {}\n",
                        f.line, f.invocation, f.expected, f.actual
                    );
                }
                if verbose {
                    for p in &run.printed {
                        text += &format!("  {path}:{p}\n");
                    }
                }
                if let Status::Failed(message) = &result.status
                    && run.failures.is_empty()
                {
                    text += &format!("FAIL {path} {label}:\n{}", indent(message));
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
        let _ = out.write_all(text.as_bytes());
    }
    let mut s = String::new();
    s += &format!(
        "\n{} files: {}; {:.2}s\n",
        reports.len(),
        files.show(),
        elapsed.as_secs_f64()
    );
    s += "tests by kind and target:\n";
    for ((kind, arch), counts) in &by_kind {
        s += &format!("  {kind:15} {arch:10} {}\n", counts.show());
    }
    if !skip_reasons.is_empty() {
        s += "skipped tests:\n";
        for (reason, n) in &skip_reasons {
            s += &format!("  {n:5} × {reason}\n");
        }
    }
    if !by_target.is_empty() {
        s += "run lines by target:\n";
        for (arch, mode, counts, reasons) in &by_target {
            s += &format!("  {arch:8} {mode:8} {}\n", counts.show());
            for (reason, n) in reasons {
                s += &format!("      {n:5} skipped: {reason}\n");
            }
        }
    }
    s += &format!("run: {}\n", run_total.show());
    let _ = out.write_all(s.as_bytes());
    if files.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
