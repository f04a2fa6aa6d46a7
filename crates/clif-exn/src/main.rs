//! `clif-exn`: run Cranelift filetests on x86_64, aarch64, riscv64 and s390x.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use cranelift_exn::Error;
use cranelift_exn::filetest::{FileReport, MachineProvider, collect_files, run_file};
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::Machine;
use cranelift_exn::native::NativeMachine;
use cranelift_exn_emulator::EmulatedMachine;

const USAGE: &str = "\
usage: clif-exn test [-v] PATH...

Runs the `test run` filetests in PATH (files, or directories searched for
*.clif) on every `target` line: natively where the target is the host,
in an emulator otherwise.

  -v, --verbose   print each file with its time, and `; print:` output
  -j N            run N files at once (default: number of CPUs)
  -h, --help      this text

Exit status: 0 all passed, 1 a test failed, 2 bad usage.";

/// Native machines for the host's architecture, emulated ones for the rest.
struct Machines;

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
}

struct Options {
    verbose: bool,
    jobs: usize,
    paths: Vec<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        verbose: false,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        paths: Vec::new(),
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-v" | "--verbose" => options.verbose = true,
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
    match args.first().map(String::as_str) {
        Some("test") => {}
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
    let start = Instant::now();
    let reports = run_all(&files, options.jobs);
    print_reports(&reports, options.verbose, start.elapsed())
}

/// Run files on `jobs` threads; reports come back in input order.
fn run_all(files: &[PathBuf], jobs: usize) -> Vec<FileReport> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<FileReport>>> =
        files.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(files.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(file) = files.get(i) else { break };
                    let report = run_file(file, &Machines);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(report);
                    }
                }
            });
        }
    });
    slots
        .into_iter()
        .filter_map(|s| s.into_inner().ok().flatten())
        .collect()
}

#[derive(Default)]
struct Counts {
    passed: usize,
    failed: usize,
    skipped: usize,
}

fn print_reports(reports: &[FileReport], verbose: bool, elapsed: std::time::Duration) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let mut per_target: Vec<(String, &'static str, Counts)> = Vec::new();
    let mut total = Counts::default();
    let mut files_skipped = 0;
    let mut files_failed = 0;
    for report in reports {
        let path = report.path.display();
        if verbose {
            let _ = writeln!(out, "{path} ({:.3}s)", report.elapsed.as_secs_f64());
        }
        if let Some(reason) = &report.skipped {
            files_skipped += 1;
            if verbose {
                let _ = writeln!(out, "  skipped: {reason}");
            }
            continue;
        }
        if report.failed() {
            files_failed += 1;
        }
        if let Some(f) = &report.file_failure {
            total.failed += 1;
            let _ = writeln!(out, "FAIL {path}:{} {f}", f.line);
        }
        for t in &report.targets {
            let name = t.arch.map_or(t.target.clone(), |a| a.name().to_string());
            let index = match per_target.iter().position(|(n, _, _)| *n == name) {
                Some(i) => i,
                None => {
                    per_target.push((name, t.mode, Counts::default()));
                    per_target.len() - 1
                }
            };
            let counts = &mut per_target[index].2;
            if let Some(reason) = &t.skipped {
                counts.skipped += 1;
                total.skipped += 1;
                let _ = writeln!(out, "SKIP {path} [{}]: {reason}", t.target);
            }
            counts.passed += t.passed;
            counts.failed += t.failures.len();
            total.passed += t.passed;
            total.failed += t.failures.len();
            for f in &t.failures {
                let _ = writeln!(out, "FAIL {path}:{} {f}", f.line);
            }
            if verbose {
                for p in &t.printed {
                    let _ = writeln!(out, "  {path}:{p}");
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "\n{} files ({} failed, {} not `test run`), {:.2}s",
        reports.len(),
        files_failed,
        files_skipped,
        elapsed.as_secs_f64()
    );
    for (name, mode, c) in &per_target {
        let _ = writeln!(
            out,
            "  {name:8} {mode:8} {} passed, {} failed, {} targets skipped",
            c.passed, c.failed, c.skipped
        );
    }
    let _ = writeln!(
        out,
        "run: {} passed, {} failed, {} skipped",
        total.passed, total.failed, total.skipped
    );
    if total.failed > 0 || files_failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
