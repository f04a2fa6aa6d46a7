//! `clif-exn test`: Cranelift's filetests (the kinds and verdicts of
//! upstream's `clif-util test`), with `test run` executed on x86_64,
//! aarch64, riscv64 and s390x — natively for the host, emulated otherwise.

mod fuzz;
mod report;
mod slot;
mod supervise;
mod worker;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cranelift_exn::Error;
use cranelift_exn::codegen::isa::TargetIsa;
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::{Machine, MachineKind, MachineProvider};
use cranelift_exn_filetests::run::host_unsupported;
use cranelift_exn_filetests::runner::{Found, collect};
use cranelift_exn_qemu::QemuMachine;

const USAGE: &str = "\
usage: clif-exn test [-v] [-j N] [--timeout SECS] [--no-run | --host-only]
                     [--emulator unicorn|qemu|auto] [--isa LIST] PATH...

Runs the Cranelift filetests in PATH (files, or directories searched for
*.clif), as upstream's `clif-util test` does. `test run` executes on every
`target` line: natively where the target is the host, in an emulator
otherwise. CRANELIFT_TEST_BLESS=1 rewrites `precise-output` expectations.

Files run in worker processes: a run line that crashes or hangs fails its
file, at that line, and the file's other targets and the other files go on.
Results are printed as files finish, in file order; control characters a
file's lines hold are printed as escapes (\\u{0}).

  -v, --verbose   print each file with its time, and every test's verdict
  -j N            run N workers at once (default: number of CPUs)
  --timeout SECS  limit on each run line (and each other test step);
                  default 60
  --no-run        do not execute `test run` (counted as skipped)
  --host-only     execute `test run` only for host targets, as upstream does
                  (other targets counted as skipped)
  --emulator E    what runs targets that are not the host: `unicorn` (in
                  this process), `qemu` (a qemu-<arch> user-mode process,
                  package qemu-user), or `auto` (default): unicorn when its
                  CPU has the target's flags, else QEMU when qemu-<arch> is
                  installed and its CPU has them. A target neither can run
                  is skipped with the reason.
  --isa LIST      execute `test run` only for targets of these ISAs
                  (comma-separated subset of x86_64,aarch64,riscv64,s390x;
                  the others counted as skipped)
  -h, --help      this text

Exit status: 0 nothing failed, 1 a test (or a PATH) failed, 2 bad usage.

       clif-exn fuzz [--seed N] [--count K] [--isa LIST] [--emulators LIST] [-j N] [--out DIR]

Runs generated exception programs on every ISA against an oracle; see
`clif-exn fuzz --help`.";

/// Which emulator runs the targets that are not the host (`--emulator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EmulatorChoice {
    /// unicorn ([`MachineKind::Emulated`]) only.
    Unicorn,
    /// QEMU user mode ([`MachineKind::Qemu`]) only.
    Qemu,
    /// unicorn when its CPU has the target's flags, else QEMU when
    /// `qemu-<arch>` is installed and its CPU has them.
    Auto,
}

impl EmulatorChoice {
    /// The choice named on the command line.
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "unicorn" => Ok(EmulatorChoice::Unicorn),
            "qemu" => Ok(EmulatorChoice::Qemu),
            "auto" => Ok(EmulatorChoice::Auto),
            other => Err(format!(
                "--emulator needs `unicorn`, `qemu` or `auto`, not `{other}`"
            )),
        }
    }

    /// The name [`EmulatorChoice::parse`] takes.
    fn name(self) -> &'static str {
        match self {
            EmulatorChoice::Unicorn => "unicorn",
            EmulatorChoice::Qemu => "qemu",
            EmulatorChoice::Auto => "auto",
        }
    }
}

/// Native machines for the host's architecture, emulated ones (unicorn or
/// QEMU, as `emulator` says) for the rest, unless `host_only`: the provider
/// of `clif-exn test` and `clif-exn fuzz`.
struct Machines {
    host_only: bool,
    emulator: EmulatorChoice,
    /// The ISAs whose targets run (`--isa`); `None`: all.
    only: Option<Vec<Arch>>,
}

/// Why `qemu-<arch>` cannot be started: it is not installed.
fn qemu_missing(arch: Arch) -> Option<String> {
    (!QemuMachine::is_installed(arch)).then(|| {
        format!("`qemu-{arch}` is not on PATH (install QEMU user mode, package qemu-user)")
    })
}

impl MachineProvider for Machines {
    fn kind(&self, arch: Arch) -> MachineKind {
        match self.emulator {
            EmulatorChoice::Qemu if Arch::host() != Some(arch) => MachineKind::Qemu,
            _ => MachineKind::for_arch(arch),
        }
    }

    fn kind_for_isa(&self, arch: Arch, isa: &dyn TargetIsa) -> MachineKind {
        if Arch::host() == Some(arch) || self.emulator != EmulatorChoice::Auto {
            return self.kind(arch);
        }
        let on_qemu = cranelift_exn_emulator::unsupported_reason(isa).is_some()
            && QemuMachine::is_installed(arch)
            && cranelift_exn_qemu::unsupported_reason(isa).is_none();
        if on_qemu {
            MachineKind::Qemu
        } else {
            MachineKind::Emulated
        }
    }

    fn machine(&self, arch: Arch, kind: MachineKind) -> Result<Box<dyn Machine>, Error> {
        // No emulator timeout: unicorn runs a timer thread per call for it
        // (doubling the cost of a run line); the parent's limit covers
        // emulated lines as it does native ones (and a QEMU process dies
        // with the worker that started it).
        match kind {
            MachineKind::Qemu => Ok(Box::new(QemuMachine::new(arch)?)),
            _ => cranelift_exn_emulator::new_machine(arch, kind),
        }
    }

    fn unsupported(&self, isa: &dyn TargetIsa) -> Option<String> {
        let Some(arch) = Arch::from_triple(isa.triple()) else {
            return cranelift_exn_emulator::unsupported_reason(isa);
        };
        if let Some(only) = &self.only
            && !only.contains(&arch)
        {
            return Some(format!("{arch} not selected (--isa)"));
        }
        if Some(arch) == Arch::host() {
            return host_unsupported(isa);
        }
        if self.host_only {
            return Some("not the host (--host-only)".into());
        }
        let qemu = || cranelift_exn_qemu::unsupported_reason(isa);
        match self.emulator {
            EmulatorChoice::Unicorn => cranelift_exn_emulator::unsupported_reason(isa),
            EmulatorChoice::Qemu => qemu_missing(arch).or_else(qemu),
            EmulatorChoice::Auto => {
                let unicorn = cranelift_exn_emulator::unsupported_reason(isa)?;
                match (qemu_missing(arch), qemu()) {
                    (None, None) => None,
                    (Some(missing), None) => {
                        Some(format!("{unicorn}; QEMU's CPU has them, but {missing}"))
                    }
                    (_, Some(lacking)) => Some(format!("{unicorn}; {lacking}")),
                }
            }
        }
    }

    fn unsupported_code(&self, arch: Arch, kind: MachineKind, code: &[u8]) -> Option<String> {
        match kind {
            // Only unicorn's CPUs are known to mis-execute instructions.
            MachineKind::Emulated => {
                cranelift_exn_emulator::capabilities::unsupported_code(arch, code)
            }
            MachineKind::Native | MachineKind::Qemu => None,
        }
    }
}

/// The ISAs of a comma-separated list (`--isa`).
fn parse_isa_list(list: &str) -> Result<Vec<Arch>, String> {
    list.split(',')
        .map(|name| {
            Arch::ALL
                .into_iter()
                .find(|a| a.name() == name)
                .ok_or_else(|| {
                    format!("--isa: unknown ISA `{name}` (x86_64, aarch64, riscv64, s390x)")
                })
        })
        .collect()
}

struct Options {
    verbose: bool,
    jobs: usize,
    timeout: Duration,
    no_run: bool,
    host_only: bool,
    emulator: EmulatorChoice,
    only: Option<Vec<Arch>>,
    paths: Vec<PathBuf>,
}

fn parse_args(args: &[OsString]) -> Result<Options, String> {
    let mut options = Options {
        verbose: false,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        timeout: Duration::from_secs(60),
        no_run: false,
        host_only: false,
        emulator: EmulatorChoice::Auto,
        only: None,
        paths: Vec::new(),
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.to_str() {
            Some("-v" | "--verbose") => options.verbose = true,
            Some("--no-run") => options.no_run = true,
            Some("--host-only") => options.host_only = true,
            Some("--emulator") => {
                let name = iter
                    .next()
                    .ok_or("--emulator needs unicorn, qemu or auto")?;
                options.emulator = EmulatorChoice::parse(&name.to_string_lossy())?;
            }
            Some("--isa") => {
                let list = iter.next().ok_or("--isa needs a list of ISAs")?;
                options.only = Some(parse_isa_list(&list.to_string_lossy())?);
            }
            Some("-j") => {
                let n = iter.next().ok_or("-j needs a number")?;
                options.jobs = n
                    .to_str()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n: &usize| n > 0)
                    .ok_or_else(|| format!("-j needs a positive number, not `{}`", n.display()))?;
            }
            Some("--timeout") => {
                let n = iter.next().ok_or("--timeout needs a number of seconds")?;
                options.timeout = n
                    .to_str()
                    .and_then(|n| n.parse::<f64>().ok())
                    .filter(|&n| n > 0.0 && n <= 1e6)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        format!(
                            "--timeout needs a positive number of seconds, not `{}`",
                            n.display()
                        )
                    })?;
            }
            Some(flag) if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown option `{flag}`"));
            }
            _ => options.paths.push(PathBuf::from(arg)),
        }
    }
    if options.paths.is_empty() {
        return Err("no PATH given".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
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
    match args.first().and_then(|a| a.to_str()) {
        Some("test") => {}
        Some("__worker") => return worker::main(&args[1..]),
        Some("fuzz") => {
            let rest: Option<Vec<String>> = args[1..]
                .iter()
                .map(|a| a.to_str().map(str::to_string))
                .collect();
            let Some(rest) = rest else {
                eprintln!("clif-exn: fuzz arguments must be UTF-8");
                return ExitCode::from(2);
            };
            return fuzz::main(&rest);
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("clif-exn: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
        None if args.is_empty() => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
        None => {
            eprintln!(
                "clif-exn: unknown command `{}`\n\n{USAGE}",
                args[0].display()
            );
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
    // A path that cannot be read fails on its own; the rest still runs.
    let entries: Vec<Result<PathBuf, (PathBuf, String)>> = collect(&options.paths)
        .into_iter()
        .map(|found| match found {
            Found::File(path) => Ok(path),
            Found::Error(path, message) => Err((path, message)),
        })
        .collect();
    let mut worker_args = Vec::new();
    if options.no_run {
        worker_args.push(OsString::from("--no-run"));
    }
    if options.host_only {
        worker_args.push(OsString::from("--host-only"));
    }
    worker_args.push(OsString::from("--emulator"));
    worker_args.push(OsString::from(options.emulator.name()));
    if let Some(only) = &options.only {
        worker_args.push(OsString::from("--isa"));
        let names: Vec<&str> = only.iter().map(|a| a.name()).collect();
        worker_args.push(OsString::from(names.join(",")));
    }
    let settings = supervise::Settings {
        jobs: options.jobs,
        timeout: options.timeout,
        worker_args,
        split: !cranelift_exn_filetests::bless::enabled(),
    };
    let mut printer = report::Printer::new(options.verbose, options.no_run, options.timeout);
    supervise::run(&entries, &settings, &mut printer);
    printer.finish()
}
