//! The worker side of `clif-exn test`: a child process (`clif-exn
//! __worker`) that runs parts of files it is sent on its standard input and
//! answers on the pipe that was its standard output, telling the parent
//! before each test and run line what it starts, so that the parent can
//! name the line that hung or crashed the process.

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cranelift_exn_filetests::kinds::RunEnv;
use cranelift_exn_filetests::run::{MachineProvider, Progress};
use cranelift_exn_filetests::runner::RUN_STACK_SIZE;
use cranelift_exn_filetests::runone::{FileReport, Part, run_part};
use serde::{Deserialize, Serialize};

use crate::slot::{Slot, SlotLine};
use crate::{EmulatorChoice, Machines};

/// A part of a file for a worker to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    /// The file's path as raw bytes (paths need not be UTF-8).
    pub path: Vec<u8>,
    /// Which part of it.
    pub part: Part,
}

/// What a worker says, one JSON object per line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Message {
    /// A test kind starts (on a target).
    Test {
        /// The kind.
        kind: String,
        /// The target's label.
        target: Option<String>,
    },
    /// A run line starts executing.
    Line(usize),
    /// The job leaves `test run` on these targets to jobs of their own
    /// ([`Part::RunTarget`]), announced before it runs anything.
    Deferred(Vec<usize>),
    /// The job is done.
    Done(FileReport),
}

/// A path from its raw bytes.
pub fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        PathBuf::from(OsString::from_vec(bytes))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(OsString::from(String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// A path's raw bytes.
pub fn path_bytes(path: &std::path::Path) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        path.to_string_lossy().into_owned().into_bytes()
    }
}

/// The protocol channel: the original standard output. Standard output is
/// then pointed at standard error, so that nothing else printing (a library,
/// a panic) can corrupt the protocol.
fn protocol_channel() -> std::io::Result<std::fs::File> {
    #[cfg(unix)]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: dup and dup2 on the process's own standard descriptors;
        // the duplicate is owned by the returned File only.
        unsafe {
            let fd = libc::dup(1);
            if fd < 0 || libc::dup2(2, 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(std::fs::File::from_raw_fd(fd))
        }
    }
    #[cfg(not(unix))]
    {
        Err(std::io::Error::other("workers need a Unix host"))
    }
}

/// Run jobs from standard input until it closes. `args`: `--no-run`,
/// `--host-only`, `--emulator NAME`, `--isa LIST`, `--progress-fd FD` (the parent's shared
/// [`Slot`] for run lines), as the parent passes them.
pub fn main(args: &[OsString]) -> std::process::ExitCode {
    let mut no_run = false;
    let mut host_only = false;
    let mut emulator = EmulatorChoice::Auto;
    let mut only = None;
    let mut slot = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.to_str() {
            Some("--no-run") => no_run = true,
            Some("--host-only") => host_only = true,
            Some("--isa") => match iter
                .next()
                .map(|list| crate::parse_isa_list(&list.to_string_lossy()))
            {
                Some(Ok(list)) => only = Some(list),
                _ => return std::process::ExitCode::from(2),
            },
            Some("--emulator") => {
                match iter
                    .next()
                    .map(|name| EmulatorChoice::parse(&name.to_string_lossy()))
                {
                    Some(Ok(choice)) => emulator = choice,
                    _ => return std::process::ExitCode::from(2),
                }
            }
            #[cfg(target_os = "linux")]
            Some("--progress-fd") => {
                let fd = iter
                    .next()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse().ok());
                match fd.map(Slot::map) {
                    Some(Ok(mapped)) => slot = Some(mapped),
                    _ => return std::process::ExitCode::from(2),
                }
            }
            _ => return std::process::ExitCode::from(2),
        }
    }
    // A caught panic goes into its file's report, not to standard error.
    cranelift_exn_filetests::panics::record_panics();
    let out = match protocol_channel() {
        Ok(out) => Arc::new(Mutex::new(std::io::BufWriter::new(out))),
        Err(e) => {
            eprintln!("clif-exn worker: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let send = {
        let out = out.clone();
        move |message: &Message| {
            let Ok(mut out) = out.lock() else { return };
            // A parent that has gone away ends the worker at its next read.
            let _ = serde_json::to_writer(&mut *out, message);
            let _ = out.write_all(b"\n");
            let _ = out.flush();
        }
    };
    let send = Arc::new(send);
    let progress_send = send.clone();
    // Test steps announced so far: a run line in the slot names its step.
    let tests = AtomicU64::new(0);
    let env = RunEnv {
        provider: (!no_run).then(|| {
            Arc::new(Machines {
                host_only,
                emulator,
                only,
            }) as Arc<dyn MachineProvider>
        }),
        progress: Some(Arc::new(move |progress: Progress<'_>| match progress {
            Progress::Test { kind, target } => match &slot {
                Some(slot) => tests.store(slot.store_step(kind, target), Ordering::Relaxed),
                None => progress_send(&Message::Test {
                    kind: kind.to_string(),
                    target: target.map(str::to_string),
                }),
            },
            Progress::Line { line, .. } => match &slot {
                Some(slot) => slot.store(SlotLine {
                    tests: tests.load(Ordering::Relaxed),
                    line,
                }),
                None => progress_send(&Message::Line(line)),
            },
            Progress::Deferred { targets } => progress_send(&Message::Deferred(targets.to_vec())),
        })),
    };
    // Every job runs on a thread with the same stack, so that how deep a
    // native run line may recurse never depends on the scheduling.
    let runner = std::thread::Builder::new()
        .name("clif-exn-worker".into())
        .stack_size(RUN_STACK_SIZE)
        .spawn(move || {
            let stdin = std::io::stdin().lock();
            for line in stdin.lines() {
                let Ok(line) = line else { break };
                let job: Job = match serde_json::from_str(&line) {
                    Ok(job) => job,
                    Err(e) => {
                        eprintln!("clif-exn worker: bad job `{line}`: {e}");
                        return false;
                    }
                };
                let path = path_from_bytes(job.path);
                let report = run_part(&path, job.part, &env);
                send(&Message::Done(report));
            }
            true
        });
    match runner.map(|r| r.join()) {
        Ok(Ok(true)) => std::process::ExitCode::SUCCESS,
        Ok(Err(_)) => {
            // A panic nothing caught: say what it was, as the default hook
            // would have, before the supervisor reports the worker's end.
            for panic in cranelift_exn_filetests::panics::take() {
                eprintln!("clif-exn worker panicked at {panic}");
            }
            std::process::ExitCode::from(101)
        }
        _ => std::process::ExitCode::from(2),
    }
}
