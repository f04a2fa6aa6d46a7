//! A deterministic sweep: programs from consecutive seeds, each run on every
//! machine and compared with the oracle; mismatches are minimized and
//! written as standalone `test run` files.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cranelift_exn::Error;
use cranelift_exn::compile::default_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::{MachineKind, MachineProvider};
use cranelift_exn::unwind::{Sabotage, set_sabotage};

use crate::harness::{Mismatch, check};
use crate::minimize::minimize;
use crate::program::from_seed;
use crate::{clif, oracle};

/// One machine programs run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its architecture.
    pub arch: Arch,
    /// The host CPU, unicorn or QEMU.
    pub kind: MachineKind,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.arch, self.kind.name())
    }
}

impl Target {
    /// The kind of machine it is.
    pub fn kind(&self) -> MachineKind {
        self.kind
    }

    /// Every machine for `arches`: each on unicorn, and natively too for
    /// the host's architecture.
    pub fn all(arches: &[Arch]) -> Vec<Target> {
        Target::all_on(arches, &[MachineKind::Emulated])
    }

    /// Every machine for `arches`: natively for the host's architecture,
    /// and on each of `emulators` (unicorn, QEMU) for every architecture, so
    /// that one program's outcomes on all of them are compared.
    pub fn all_on(arches: &[Arch], emulators: &[MachineKind]) -> Vec<Target> {
        let mut targets = Vec::new();
        for &arch in arches {
            if Arch::host() == Some(arch) {
                targets.push(Target {
                    arch,
                    kind: MachineKind::Native,
                });
            }
            for &kind in emulators.iter().filter(|k| !k.is_native()) {
                targets.push(Target { arch, kind });
            }
        }
        targets
    }
}

/// What to sweep.
#[derive(Clone, Debug)]
pub struct Options {
    /// The first seed.
    pub seed: u64,
    /// How many programs.
    pub count: u64,
    /// The machines to run each program on.
    pub targets: Vec<Target>,
    /// Worker threads.
    pub jobs: usize,
    /// Where to write minimized reproductions (`None`: not written).
    pub out_dir: Option<PathBuf>,
    /// A deliberate unwinder bug to turn on for the whole process (to show
    /// the oracle notices); `None` leaves the process's setting alone.
    pub sabotage: Option<Sabotage>,
    /// Stop after this many mismatches.
    pub max_mismatches: usize,
}

/// What a sweep found.
#[derive(Debug, Default)]
pub struct Report {
    /// Programs generated.
    pub programs: u64,
    /// Program runs (programs × machines).
    pub runs: u64,
    /// Mismatches found (at most `max_mismatches`), minimized.
    pub mismatches: Vec<Mismatch>,
    /// The reproduction files written, one per mismatch.
    pub written: Vec<PathBuf>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Run the sweep.
pub fn sweep(options: &Options, machines: &dyn MachineProvider) -> Result<Report, Error> {
    let start = Instant::now();
    if options.sabotage.is_some() {
        set_sabotage(options.sabotage);
    }
    let isas = options
        .targets
        .iter()
        .map(|&target| default_isa(target.arch).map(|isa| (target, isa)))
        .collect::<Result<Vec<_>, _>>()?;
    let next = AtomicU64::new(0);
    let runs = AtomicU64::new(0);
    let found: Mutex<Vec<Mismatch>> = Mutex::new(Vec::new());
    let done = || {
        found
            .lock()
            .map(|f| f.len() >= options.max_mismatches)
            .unwrap_or(true)
    };
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= options.count || done() {
                        break;
                    }
                    let seed = options.seed.wrapping_add(i);
                    let program = from_seed(seed);
                    for (target, isa) in &isas {
                        let label = target.to_string();
                        let outcome: Result<(), Result<Mismatch, String>> =
                            match machines.machine(target.arch, target.kind()) {
                                Err(e) => Err(Err(e.to_string())),
                                Ok(m) => check(&program, &label, isa.as_ref(), m).map_err(|m| {
                                    let mut m = *m;
                                    m.seed = Some(seed);
                                    shrink(m, *target, isa.as_ref(), machines)
                                }),
                            };
                        runs.fetch_add(1, Ordering::Relaxed);
                        match outcome {
                            Ok(()) => {}
                            Err(Ok(mismatch)) => {
                                if let Ok(mut f) = found.lock() {
                                    f.push(mismatch);
                                }
                            }
                            Err(Err(message)) => {
                                if let Ok(mut f) = found.lock() {
                                    f.push(Mismatch {
                                        seed: Some(seed),
                                        machine: label,
                                        expected: oracle::expected(&program),
                                        actual: crate::Ending::Failed(message),
                                        program: program.clone(),
                                    });
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    let mut mismatches = found.into_inner().unwrap_or_default();
    mismatches.sort_by_key(|m| m.seed);
    mismatches.truncate(options.max_mismatches);
    let mut written = Vec::new();
    if let Some(dir) = &options.out_dir {
        for m in &mismatches {
            written.push(write_reproduction(dir, m)?);
        }
    }
    Ok(Report {
        programs: next.load(Ordering::Relaxed).min(options.count),
        runs: runs.load(Ordering::Relaxed),
        mismatches,
        written,
        elapsed: start.elapsed(),
    })
}

/// Minimize a mismatch on the machine it happened on.
fn shrink(
    mismatch: Mismatch,
    target: Target,
    isa: &dyn cranelift_exn::codegen::isa::TargetIsa,
    machines: &dyn MachineProvider,
) -> Result<Mismatch, String> {
    let label = mismatch.machine.clone();
    let fails = |p: &crate::Program| {
        machines
            .machine(target.arch, target.kind())
            .is_ok_and(|m| check(p, &label, isa, m).is_err())
    };
    let small = minimize(&mismatch.program, fails);
    let machine = machines
        .machine(target.arch, target.kind())
        .map_err(|e| e.to_string())?;
    match check(&small, &label, isa, machine) {
        Err(m) => Ok(Mismatch {
            seed: mismatch.seed,
            ..*m
        }),
        // Flaky: keep the original.
        Ok(()) => Ok(mismatch),
    }
}

/// Write `mismatch` as `DIR/seed-N-ARCH.clif`, a `test run` file; returns
/// the path. A program that still calls host functions (the minimizer
/// turns every one it can into CLIF) or is still loaded a function per
/// finalize cannot be a faithful test file: it is written as
/// `seed-N-ARCH.txt`, the same text with what it needs described and the
/// command that replays its seed.
pub fn write_reproduction(dir: &Path, mismatch: &Mismatch) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Machine(format!("creating {}: {e}", dir.display())))?;
    let arch = mismatch
        .machine
        .split_whitespace()
        .next()
        .unwrap_or("unknown")
        .to_string();
    let slug = mismatch.machine.replace(' ', "-");
    let seed = mismatch
        .seed
        .map_or_else(|| "?".to_string(), |s| s.to_string());
    let mut comment = format!(
        "Minimized by `clif-exn fuzz` from seed {seed}.\nOn {}: expected {}, got {}.",
        mismatch.machine, mismatch.expected, mismatch.actual
    );
    let hosts: Vec<String> = mismatch
        .program
        .hosts()
        .into_iter()
        .enumerate()
        .filter(|(_, (_, in_clif))| !in_clif)
        .map(|(n, (action, _))| format!("  %h{n}: {action:?}"))
        .collect();
    if !hosts.is_empty() {
        comment.push_str(&format!(
            "\nNot a test file: it calls host functions (see `HostAction` in \
             crates/fuzzgen/src/program.rs), which only the fuzzer defines:\n{}",
            hosts.join("\n")
        ));
    }
    if mismatch.program.incremental {
        comment.push_str(
            "\nNot a test file: the fuzzer loaded it a function per finalize \
             (callees first), a test file loads it at once.",
        );
    }
    let faithful = hosts.is_empty() && !mismatch.program.incremental;
    if !faithful {
        comment.push_str(&format!(
            "\nReplay the unminimized program with \
             `clif-exn fuzz --seed {seed} --count 1 --isa {arch}`."
        ));
    }
    let extension = if faithful { "clif" } else { "txt" };
    let name = match mismatch.seed {
        Some(seed) => format!("seed-{seed}-{slug}.{extension}"),
        None => format!("mismatch-{slug}.{extension}"),
    };
    let path = dir.join(name);
    let text = clif::run_test(&mismatch.program, &[arch], &mismatch.expected, &comment);
    std::fs::write(&path, text)
        .map_err(|e| Error::Machine(format!("writing {}: {e}", path.display())))?;
    Ok(path)
}
