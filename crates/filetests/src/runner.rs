//! Many files: find them, run them in parallel, return reports in a stable
//! order.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::kinds::RunEnv;
use crate::runone::{FileReport, run_file};

/// Every `.clif` file under `path` (or `path` itself), sorted.
pub fn collect_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "clif") {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Run `files` on `jobs` threads; reports come back in the order of `files`.
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
    if jobs == 1 {
        worker();
    } else {
        std::thread::scope(|scope| {
            for _ in 0..jobs {
                scope.spawn(worker);
            }
        });
    }
    slots
        .into_iter()
        .filter_map(|s| s.into_inner().ok().flatten())
        .collect()
}
