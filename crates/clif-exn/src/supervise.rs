//! The parent side of `clif-exn test`: a pool of worker processes
//! (`clif-exn __worker`, see [`crate::worker`]) that run files in parts, a
//! time limit on each test step and run line, and reports handed on in file
//! order as soon as the order allows.
//!
//! A worker that crashes (native code that jumps into the weeds) or hangs
//! (a run line that never returns) fails the file it was running, at the run
//! line it had announced; it is replaced and the other files go on.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use cranelift_exn_filetests::runone::{FileReport, Part, Status, TestResult};
use cranelift_exn_filetests::subtest::{RunFailure, RunReport};

use crate::slot::Slot;
use crate::worker::{Job, Message, path_bytes};

/// How the pool runs.
pub struct Settings {
    /// Worker processes.
    pub jobs: usize,
    /// The limit on each run line (and each other test step).
    pub timeout: Duration,
    /// Passed on to the workers (`--no-run`, `--host-only`).
    pub worker_args: Vec<OsString>,
    /// Split `test run` files by target (not while blessing: a file's parts
    /// must not race with its rewriting).
    pub split: bool,
}

/// What happens while files run, for the caller's output.
pub trait Observer {
    /// The next file's report, in file order.
    fn file_done(&mut self, report: FileReport);
    /// Called about every 200 ms while anything runs.
    fn tick(&mut self, status: &PoolStatus);
}

/// A test step: the kind and the target's label.
pub type Step = (String, Option<String>);

/// Where a run stands, for a progress line and stall notices.
pub struct PoolStatus<'a> {
    /// Files reported so far.
    pub done: usize,
    /// All files.
    pub total: usize,
    /// What each busy worker is doing.
    pub running: Vec<RunningInfo<'a>>,
}

/// One busy worker.
pub struct RunningInfo<'a> {
    /// Its file.
    pub path: &'a std::path::Path,
    /// Its current test kind and target.
    pub test: Option<&'a Step>,
    /// Its current run line.
    pub line: Option<usize>,
    /// How long the part has been running.
    pub elapsed: Duration,
}

struct Running {
    job: usize,
    started: Instant,
    /// When the current step (test or run line) started.
    step_started: Instant,
    test: Option<Step>,
    line: Option<usize>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    running: Option<Running>,
    /// Where the worker puts its run line (Linux), else it sends them.
    slot: Option<Slot>,
    /// The slot's step sequence number when last looked at.
    step_sequence: u64,
    /// The slot's line sequence number when last looked at.
    sequence: u64,
}

impl Worker {
    /// Forget the previous job's steps: called, while the worker is idle,
    /// when it is given a job.
    fn sync_slot(&mut self) {
        if let Some(slot) = &self.slot {
            self.step_sequence = slot.load_step().0;
            self.sequence = slot.load().0;
        }
    }

    /// Take the test step and run line from the slot where they changed
    /// since the last look (a line only if it belongs to the current step).
    fn poll_slot(&mut self) {
        let (Some(slot), Some(running)) = (&self.slot, &mut self.running) else {
            return;
        };
        let (step_sequence, step) = slot.load_step();
        if step_sequence != self.step_sequence {
            self.step_sequence = step_sequence;
            running.test = step;
            running.line = None;
            running.step_started = Instant::now();
        }
        let (sequence, line) = slot.load();
        if sequence == self.sequence {
            return;
        }
        self.sequence = sequence;
        if line.in_step(self.step_sequence / 2) {
            running.line = Some(line.line);
            running.step_started = Instant::now();
        }
    }
}

enum Event {
    Message(Message),
    /// The worker's output ended (it exited or was killed).
    Closed,
    /// Its output could not be understood.
    Garbled(String),
}

/// A part of a file waiting for, or on, a worker.
struct JobSpec {
    file: usize,
    part: Part,
}

/// The state of one file.
#[derive(Default)]
struct FileState {
    report: Option<FileReport>,
    /// Parts not yet reported.
    pending: usize,
}

/// Run the files of `entries` on a pool of workers (an `Err` is a path that
/// could not be searched, reported as a failure in its place); the observer
/// gets each file's report in order.
pub fn run(
    entries: &[Result<PathBuf, (PathBuf, String)>],
    settings: &Settings,
    observer: &mut dyn Observer,
) {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            for entry in entries {
                let path = match entry {
                    Ok(p) | Err((p, _)) => p,
                };
                let mut report = FileReport::new(path);
                report.file_error = Some(format!("clif-exn: cannot find its own binary: {e}"));
                observer.file_done(report);
            }
            return;
        }
    };
    let (tx, rx) = channel::<(usize, Event)>();
    let mut pool = Pool {
        exe,
        settings,
        tx,
        workers: BTreeMap::new(),
        next_worker: 0,
        jobs: Vec::new(),
        queue: VecDeque::new(),
        files: entries.iter().map(|_| FileState::default()).collect(),
    };
    let paths: Vec<&PathBuf> = entries
        .iter()
        .map(|e| match e {
            Ok(p) | Err((p, _)) => p,
        })
        .collect();
    for (index, entry) in entries.iter().enumerate() {
        match entry {
            Ok(_) => {
                pool.files[index].pending = 1;
                let part = if settings.split {
                    Part::Main
                } else {
                    Part::Whole
                };
                pool.enqueue(index, part, false);
            }
            Err((path, message)) => {
                let mut report = FileReport::new(path);
                report.file_error = Some(format!("{}: {message}", path.display()));
                pool.files[index].report = Some(report);
            }
        }
    }
    let mut printed = 0;
    let mut last_tick = Instant::now();
    loop {
        // Hand on every finished file the order allows.
        while printed < pool.files.len()
            && pool.files[printed].pending == 0
            && pool.files[printed].report.is_some()
        {
            if let Some(mut report) = pool.files[printed].report.take() {
                report.path = paths[printed].clone();
                observer.file_done(report);
            }
            printed += 1;
        }
        if printed == pool.files.len() {
            break;
        }
        pool.dispatch(&paths);
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((worker, event)) => pool.handle(worker, event, &paths),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        pool.enforce_limits(&paths);
        if last_tick.elapsed() >= Duration::from_millis(200) {
            last_tick = Instant::now();
            let running = pool
                .workers
                .values()
                .filter_map(|w| w.running.as_ref())
                .map(|r| RunningInfo {
                    path: paths[pool.jobs[r.job].file],
                    test: r.test.as_ref(),
                    line: r.line,
                    elapsed: r.started.elapsed(),
                })
                .collect();
            observer.tick(&PoolStatus {
                done: printed,
                total: paths.len(),
                running,
            });
        }
    }
    // Closing their input ends the workers.
    for (_, worker) in std::mem::take(&mut pool.workers) {
        let Worker {
            mut child, stdin, ..
        } = worker;
        drop(stdin);
        let _ = child.wait();
    }
}

struct Pool<'s> {
    exe: PathBuf,
    settings: &'s Settings,
    tx: Sender<(usize, Event)>,
    workers: BTreeMap<usize, Worker>,
    next_worker: usize,
    jobs: Vec<JobSpec>,
    /// Jobs waiting, first first.
    queue: VecDeque<usize>,
    files: Vec<FileState>,
}

impl Pool<'_> {
    fn enqueue(&mut self, file: usize, part: Part, urgent: bool) {
        self.jobs.push(JobSpec { file, part });
        let job = self.jobs.len() - 1;
        if urgent {
            self.queue.push_front(job);
        } else {
            self.queue.push_back(job);
        }
    }

    /// Give waiting jobs to idle workers, starting workers as needed.
    fn dispatch(&mut self, paths: &[&PathBuf]) {
        while let Some(&job) = self.queue.front() {
            let idle = self
                .workers
                .iter()
                .find(|(_, w)| w.running.is_none())
                .map(|(&id, _)| id);
            let id = match idle {
                Some(id) => id,
                None if self.workers.len() < self.settings.jobs => match self.spawn() {
                    Ok(id) => id,
                    Err(e) => {
                        // No worker can start: fail the job rather than
                        // waiting forever.
                        self.queue.pop_front();
                        let spec = &self.jobs[job];
                        let mut report = FileReport::new(paths[spec.file]);
                        report.file_error = Some(format!(
                            "{}: cannot start a worker process: {e}",
                            paths[spec.file].display()
                        ));
                        self.part_done(job, report);
                        continue;
                    }
                },
                None => return,
            };
            self.queue.pop_front();
            let spec = &self.jobs[job];
            let message = Job {
                path: path_bytes(paths[spec.file]),
                part: spec.part,
            };
            let Some(worker) = self.workers.get_mut(&id) else {
                return;
            };
            let mut line = serde_json::to_string(&message).unwrap_or_default();
            line.push('\n');
            worker.sync_slot();
            let now = Instant::now();
            worker.running = Some(Running {
                job,
                started: now,
                step_started: now,
                test: None,
                line: None,
            });
            if worker.stdin.write_all(line.as_bytes()).is_err() || worker.stdin.flush().is_err() {
                // The worker died before taking the job: its Closed event
                // fails the job.
            }
        }
    }

    fn spawn(&mut self) -> std::io::Result<usize> {
        let mut command = Command::new(&self.exe);
        command
            .arg("__worker")
            .args(&self.settings.worker_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // A shared page for run lines: no message per line. Only this child
        // inherits its descriptor (closed here once it has started).
        #[cfg(target_os = "linux")]
        let (slot, fd) = match Slot::create() {
            Ok((slot, fd)) => {
                use std::os::fd::AsRawFd;
                command.arg("--progress-fd").arg(fd.as_raw_fd().to_string());
                (Some(slot), Some(fd))
            }
            Err(_) => (None, None),
        };
        #[cfg(not(target_os = "linux"))]
        let slot = None;
        let spawned = command.spawn();
        #[cfg(target_os = "linux")]
        drop(fd);
        let mut child = spawned?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("no pipes to the worker"));
        };
        let id = self.next_worker;
        self.next_worker += 1;
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let event = match line {
                    Ok(line) => match serde_json::from_str(&line) {
                        Ok(message) => Event::Message(message),
                        Err(e) => Event::Garbled(format!("{e}: {line}")),
                    },
                    Err(e) => Event::Garbled(e.to_string()),
                };
                let garbled = matches!(event, Event::Garbled(_));
                if tx.send((id, event)).is_err() || garbled {
                    break;
                }
            }
            let _ = tx.send((id, Event::Closed));
        });
        self.workers.insert(
            id,
            Worker {
                child,
                stdin,
                running: None,
                slot,
                step_sequence: 0,
                sequence: 0,
            },
        );
        Ok(id)
    }

    fn handle(&mut self, id: usize, event: Event, paths: &[&PathBuf]) {
        let Some(worker) = self.workers.get_mut(&id) else {
            // A worker already killed and reported.
            return;
        };
        match event {
            Event::Message(Message::Test { kind, target }) => {
                if let Some(r) = &mut worker.running {
                    r.test = Some((kind, target));
                    r.line = None;
                    r.step_started = Instant::now();
                }
            }
            Event::Message(Message::Line(line)) => {
                if let Some(r) = &mut worker.running {
                    r.line = Some(line);
                    r.step_started = Instant::now();
                }
            }
            Event::Message(Message::Deferred(targets)) => {
                if let Some(r) = &worker.running {
                    let file = self.jobs[r.job].file;
                    self.defer(file, targets);
                }
            }
            Event::Message(Message::Done(report)) => {
                if let Some(r) = worker.running.take() {
                    self.part_done(r.job, report);
                }
            }
            Event::Closed | Event::Garbled(_) => {
                let detail = match event {
                    Event::Garbled(text) => format!("sent garbled output ({text})"),
                    _ => String::new(),
                };
                let Some(mut worker) = self.workers.remove(&id) else {
                    return;
                };
                // Every message it sent has been handled: the slot holds
                // its last line.
                worker.poll_slot();
                let _ = worker.child.kill();
                let status = worker.child.wait();
                let how = if detail.is_empty() {
                    match status {
                        Ok(status) => describe_exit(status),
                        Err(e) => format!("was lost ({e})"),
                    }
                } else {
                    detail
                };
                if let Some(r) = worker.running.take() {
                    let report = self.lost(&r, paths, &format!("the process running it {how}"));
                    self.part_done(r.job, report);
                }
            }
        }
    }

    /// Kill workers whose current step has run past the limit.
    fn enforce_limits(&mut self, paths: &[&PathBuf]) {
        let timeout = self.settings.timeout;
        for worker in self.workers.values_mut() {
            worker.poll_slot();
        }
        let late: Vec<usize> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                w.running
                    .as_ref()
                    .is_some_and(|r| r.step_started.elapsed() > timeout)
            })
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            let Some(mut worker) = self.workers.remove(&id) else {
                continue;
            };
            let _ = worker.child.kill();
            let _ = worker.child.wait();
            if let Some(r) = worker.running.take() {
                let message = format!(
                    "timed out after {} s (--timeout); its process was killed",
                    self.settings.timeout.as_secs_f64()
                );
                let report = self.lost(&r, paths, &message);
                self.part_done(r.job, report);
            }
        }
    }

    /// The report of a part whose worker died or was killed: a failure at
    /// the run line (or test) it had announced.
    fn lost(&self, running: &Running, paths: &[&PathBuf], what: &str) -> FileReport {
        let spec = &self.jobs[running.job];
        let path = paths[spec.file];
        let mut report = FileReport::new(path);
        report.elapsed = running.started.elapsed();
        let (kind, target) = running.test.clone().unwrap_or_else(|| ("-".into(), None));
        match running.line {
            Some(line) if kind == "run" => {
                let (invocation, expected) = source_line(path, line)
                    .map(|text| split_run_line(&text))
                    .unwrap_or_else(|| ("run line".into(), "returns".into()));
                // The target's other lines went with the process: the
                // later ones never ran, the earlier ones' outcomes were
                // not sent yet.
                let others = run_lines_besides(path, line);
                report.results.push(TestResult {
                    kind,
                    target,
                    status: Status::Failed(what.to_string()),
                    run: Some(RunReport {
                        mode: "-".into(),
                        failures: vec![RunFailure {
                            line,
                            invocation,
                            expected,
                            actual: what.to_string(),
                        }],
                        skipped: (others > 0).then(|| {
                            "not reported: another run line of the target crashed or hung"
                                .to_string()
                        }),
                        lines: others,
                        ..Default::default()
                    }),
                    printed: Vec::new(),
                    order: (usize::MAX, usize::MAX),
                });
            }
            _ => {
                let during = match (&running.test, target) {
                    (None, _) => "while loading the file".to_string(),
                    (Some(_), Some(target)) => format!("in test {kind} [{target}]"),
                    (Some(_), None) => format!("in test {kind}"),
                };
                report.file_error = Some(format!("{} {during}: {what}", path.display()));
            }
        }
        report
    }

    fn part_done(&mut self, job: usize, report: FileReport) {
        let file = self.jobs[job].file;
        let deferred = report.deferred.clone();
        // Queued first, so that the file is not complete in between.
        self.defer(file, deferred);
        let state = &mut self.files[file];
        state.pending = state.pending.saturating_sub(1);
        match &mut state.report {
            Some(existing) => existing.merge(report),
            None => state.report = Some(report),
        }
    }

    /// Queue `test run` on `targets` of `file` as parts of their own.
    fn defer(&mut self, file: usize, targets: Vec<usize>) {
        self.files[file].pending += targets.len();
        // A file's other targets go first: earlier files are reported first.
        for target in targets.into_iter().rev() {
            self.enqueue(file, Part::RunTarget(target), true);
        }
    }
}

/// The text of line `line` of `path`, trimmed, for a message.
fn source_line(path: &std::path::Path, line: usize) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .nth(line.checked_sub(1)?)
        .map(|l| l.trim().to_string())
}

/// How many run (and print) lines `path` has besides line `line`: comment
/// lines `; run: ...` or `; print: ...`, each of which runs on every
/// target.
fn run_lines_besides(path: &std::path::Path, line: usize) -> usize {
    let Ok(bytes) = std::fs::read(path) else {
        return 0;
    };
    run_lines_in(&String::from_utf8_lossy(&bytes), line)
}

/// [`run_lines_besides`] for the file's text. Only functions' comments
/// are run commands (cranelift-reader attaches a comment to the function
/// before it): a run line in the preamble, before the first `function`,
/// runs nowhere and is not counted.
fn run_lines_in(text: &str, line: usize) -> usize {
    let starts_function = |l: &str| {
        l.trim_start()
            .strip_prefix("function")
            .is_some_and(|rest| rest.starts_with(char::is_whitespace))
    };
    text.lines()
        .enumerate()
        .skip_while(|&(_, l)| !starts_function(l))
        .filter(|&(i, l)| i + 1 != line && run_line_body(l).is_some())
        .count()
}

/// What follows `run:` or `print:` in a comment line (`; run: %f(1) == 2`
/// gives `%f(1) == 2`); `None` for any other line.
fn run_line_body(text: &str) -> Option<&str> {
    let comment = text.trim_start().strip_prefix(';')?;
    let body = comment.trim_start_matches(';').trim_start();
    let rest = body
        .strip_prefix("run:")
        .or_else(|| body.strip_prefix("print:"))?;
    Some(rest.trim())
}

/// A run line's invocation and expectation (`%f(1)`, `== 2`), from its
/// text (`; run: %f(1) == 2`).
fn split_run_line(text: &str) -> (String, String) {
    let body = run_line_body(text).unwrap_or_else(|| text.trim());
    for comparison in [" == ", " != "] {
        if let Some((invocation, expected)) = body.split_once(comparison) {
            return (
                invocation.trim().to_string(),
                format!("{}{}", comparison.trim_start(), expected.trim()),
            );
        }
    }
    (body.to_string(), "returns".into())
}

/// How a worker process ended, as a phrase (`was killed by signal 11
/// (SIGSEGV)`).
fn describe_exit(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGBUS => " (SIGBUS)",
                libc::SIGILL => " (SIGILL)",
                libc::SIGFPE => " (SIGFPE)",
                libc::SIGABRT => " (SIGABRT)",
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGTRAP => " (SIGTRAP)",
                _ => "",
            };
            return format!("crashed: killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("crashed: exited with status {code}"),
        None => format!("crashed: {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lines_of_the_preamble_are_not_counted() {
        let text = "test run\n; run: %f() == 5\ntarget x86_64\n\n\
                    function %f() -> i32 {\nblock0:\n    v0 = iconst.i32 1\n\
                    ; print: %f()\n    return v0\n}\n; run: %f() == 1\n; run: %f() != 2\n";
        // Lines 8, 11 and 12 run; line 2 is the preamble's.
        assert_eq!(run_lines_in(text, 11), 2);
        assert_eq!(run_lines_in(text, 2), 3);
        assert_eq!(run_lines_in("; run: %f()\nfunctional\n; run: %g()", 1), 0);
    }

    #[test]
    fn run_and_print_lines_are_told_from_other_comments() {
        assert_eq!(run_line_body("; run: %f(1) == 2"), Some("%f(1) == 2"));
        assert_eq!(run_line_body("  ;print: %g()"), Some("%g()"));
        assert_eq!(run_line_body(";; run: %f()"), Some("%f()"));
        for other in [
            "; check: run: x",
            "run: %f()",
            "; running",
            "v0 = iconst.i64 1",
        ] {
            assert_eq!(run_line_body(other), None, "{other}");
        }
        assert_eq!(
            split_run_line("; run: %f(1) != 3"),
            ("%f(1)".to_string(), "!= 3".to_string())
        );
        assert_eq!(
            split_run_line("; print: %f(1)"),
            ("%f(1)".to_string(), "returns".to_string())
        );
    }
}
