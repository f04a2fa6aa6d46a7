//! `clif-exn fuzz`: a deterministic sweep of generated exception programs,
//! each run natively and in the emulator and compared with an oracle.

use std::path::PathBuf;
use std::process::ExitCode;

use cranelift_exn::isa::Arch;
use cranelift_exn::machine::MachineKind;
use cranelift_exn::unwind::Sabotage;
use cranelift_exn_fuzzgen::sweep::{self, Options, Target};

/// Usage of `clif-exn fuzz`.
pub const USAGE: &str = "\
usage: clif-exn fuzz [--seed N] [--count K] [--isa A,B,...] [--emulators E,...]
                     [-j N] [--out DIR]

Generates K programs (from seeds N, N+1, ...) that call, try_call, throw,
rethrow, catch and trap, and call host functions that return, throw, end
the entry or call back in, some loaded a function per finalize; runs each
on every ISA (natively on the host, in
the emulator otherwise) and compares the outcome with an oracle that
interprets the program's description without Cranelift. A mismatch is
minimized and written to DIR as a `test run` file that `clif-exn test`
reproduces (as a .txt description with the command that replays it when
the mismatch needs a host function or the incremental load, which a test
file cannot express).

  --seed N        first seed (default 0)
  --count K       number of programs (default 1000)
  --isa LIST      comma-separated subset of x86_64,aarch64,riscv64,s390x
                  (default: all four; each runs emulated, and the host's
                  ISA natively as well)
  --emulators LIST
                  comma-separated subset of unicorn,qemu: the emulators
                  every ISA runs on, each program compared on all of them
                  (default unicorn; qemu needs qemu-<arch>, package
                  qemu-user)
  -j N            worker threads (default: number of CPUs)
  --out DIR       where to write reproductions (default fuzz-failures)
  --max N         stop after N mismatches (default 5)
  --sabotage BUG  test-only: turn on a deliberate unwinder bug
                  (handler-lookup, callee-saves) to check the oracle notices

Exit status: 0 no mismatch, 1 a mismatch, 2 bad usage.";

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        seed: 0,
        count: 1000,
        targets: Vec::new(),
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        out_dir: Some(PathBuf::from("fuzz-failures")),
        sabotage: None,
        max_mismatches: 5,
    };
    let mut arches = Arch::ALL.to_vec();
    let mut emulators = vec![MachineKind::Emulated];
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, text: String| {
            text.parse::<u64>()
                .map_err(|_| format!("{name} needs a number, not `{text}`"))
        };
        let positive = |name: &str, n: u64| {
            usize::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("{name} needs a positive number"))
        };
        match arg.as_str() {
            "--seed" => options.seed = number("--seed", value("--seed")?)?,
            "--count" => options.count = number("--count", value("--count")?)?,
            "-j" => options.jobs = positive("-j", number("-j", value("-j")?)?)?,
            "--max" => {
                options.max_mismatches = positive("--max", number("--max", value("--max")?)?)?
            }
            "--out" => options.out_dir = Some(PathBuf::from(value("--out")?)),
            "--isa" => {
                arches = value("--isa")?
                    .split(',')
                    .map(|name| {
                        Arch::ALL
                            .into_iter()
                            .find(|a| a.name() == name)
                            .ok_or_else(|| format!("unknown ISA `{name}`"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            }
            "--emulators" => {
                emulators = value("--emulators")?
                    .split(',')
                    .map(|name| match name {
                        "unicorn" => Ok(MachineKind::Emulated),
                        "qemu" => Ok(MachineKind::Qemu),
                        other => Err(format!("unknown emulator `{other}` (unicorn, qemu)")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            }
            "--sabotage" => options.sabotage = Some(value("--sabotage")?.parse::<Sabotage>()?),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    options.targets = Target::all_on(&arches, &emulators);
    Ok(options)
}

/// Run `clif-exn fuzz ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("clif-exn fuzz: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let report = match sweep::sweep(
        &options,
        &crate::Machines {
            host_only: false,
            emulator: crate::EmulatorChoice::Unicorn,
            only: None,
        },
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("clif-exn fuzz: {e}");
            return ExitCode::from(1);
        }
    };
    for (m, path) in report.mismatches.iter().zip(
        report
            .written
            .iter()
            .map(|p| p.display().to_string())
            .chain(std::iter::repeat(String::new())),
    ) {
        println!("MISMATCH {m}");
        if !path.is_empty() {
            println!("  minimized: {path}");
        }
    }
    let names: Vec<String> = options.targets.iter().map(|t| t.to_string()).collect();
    println!(
        "{} programs from seed {} on {} ({} runs): {} mismatches, {:.1}s",
        report.programs,
        options.seed,
        names.join(", "),
        report.runs,
        report.mismatches.len(),
        report.elapsed.as_secs_f64()
    );
    if report.mismatches.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
