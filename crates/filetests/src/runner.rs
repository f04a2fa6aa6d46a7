//! Many files: find them, run them in parallel, return reports in a stable
//! order.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::kinds::RunEnv;
use crate::runone::{FileReport, run_file};

/// A file to run, or a path that could not be searched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// A `.clif` file (or a file named on the command line).
    File(PathBuf),
    /// A path that does not exist or cannot be read, with the reason.
    Error(PathBuf, String),
}

/// What identifies a file or directory however it is reached (through
/// symbolic links, `..`): its device and inode.
#[cfg(unix)]
fn identity(meta: &std::fs::Metadata, _path: &Path) -> (u64, u64, PathBuf) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino(), PathBuf::new())
}

/// What identifies a file or directory however it is reached: its canonical
/// path.
#[cfg(not(unix))]
fn identity(_meta: &std::fs::Metadata, path: &Path) -> (u64, u64, PathBuf) {
    (
        0,
        0,
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
    )
}

/// Every `.clif` file under each of `paths` (or the path itself when it is a
/// file), each file once however many ways it is reached (symbolic links,
/// loops), sorted per path; paths that cannot be read are returned as
/// [`Found::Error`] in their place, so that the rest still runs.
pub fn collect(paths: &[PathBuf]) -> Vec<Found> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    for path in paths {
        let mut here = Vec::new();
        collect_one(path, &mut seen, &mut here);
        here.sort_by(|a, b| found_path(a).cmp(found_path(b)));
        found.extend(here);
    }
    found
}

fn found_path(found: &Found) -> &Path {
    match found {
        Found::File(p) | Found::Error(p, _) => p,
    }
}

/// One command-line path, breadth first, so that a file reached both
/// directly and through a link is listed under its shallowest path.
fn collect_one(path: &Path, seen: &mut HashSet<(u64, u64, PathBuf)>, found: &mut Vec<Found>) {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            found.push(Found::Error(path.to_path_buf(), e.to_string()));
            return;
        }
    };
    if !meta.is_dir() {
        if seen.insert(identity(&meta, path)) {
            found.push(Found::File(path.to_path_buf()));
        }
        return;
    }
    if !seen.insert(identity(&meta, path)) {
        return;
    }
    let mut dirs = VecDeque::from([path.to_path_buf()]);
    while let Some(dir) = dirs.pop_front() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                found.push(Found::Error(dir, e.to_string()));
                continue;
            }
        };
        let mut paths = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => paths.push(entry.path()),
                Err(e) => found.push(Found::Error(dir.clone(), e.to_string())),
            }
        }
        // Real entries before links, so that a file reached both ways is
        // listed under its own name.
        paths.sort_by_cached_key(|p| {
            let link = std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
            (link, p.clone())
        });
        for p in paths {
            let is_clif = p.extension().is_some_and(|e| e == "clif");
            let meta = match std::fs::metadata(&p) {
                Ok(meta) => meta,
                // A dangling link or a vanished entry matters only if it
                // would have been a test file.
                Err(e) if is_clif => {
                    found.push(Found::Error(p, e.to_string()));
                    continue;
                }
                Err(_) => continue,
            };
            if meta.is_dir() {
                if seen.insert(identity(&meta, &p)) {
                    dirs.push_back(p);
                }
            } else if is_clif && seen.insert(identity(&meta, &p)) {
                found.push(Found::File(p));
            }
        }
    }
}

/// Every `.clif` file under `path` (or `path` itself), sorted; the first
/// path that cannot be read is an error.
pub fn collect_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    collect(&[path.to_path_buf()])
        .into_iter()
        .map(|found| match found {
            Found::File(p) => Ok(p),
            Found::Error(p, e) => Err(format!("{}: {e}", p.display())),
        })
        .collect()
}

/// Run `files` on `jobs` threads in this process; reports come back in the
/// order of `files`. (`clif-exn test` runs files in supervised worker
/// processes instead, so that code that crashes or hangs fails its file
/// only.)
pub fn run_files(files: &[PathBuf], env: &RunEnv, jobs: usize) -> Vec<FileReport> {
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<FileReport>>> = files.iter().map(|_| Mutex::new(None)).collect();
    let worker = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(file) = files.get(i) else { break };
            let report = run_file(file, env);
            if let Ok(mut slot) = slots[i].lock() {
                *slot = Some(report);
            }
        }
    };
    let jobs = jobs.clamp(1, files.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            // The same stack for every file, whatever the number of jobs.
            let _ = std::thread::Builder::new()
                .stack_size(RUN_STACK_SIZE)
                .spawn_scoped(scope, worker);
        }
    });
    slots
        .into_iter()
        .filter_map(|s| s.into_inner().ok().flatten())
        .collect()
}

/// The stack of every thread that runs tests (and so native run lines): a
/// typical main thread's 8 MiB, so that how deep a run line may recurse does
/// not depend on scheduling.
pub const RUN_STACK_SIZE: usize = 8 << 20;
