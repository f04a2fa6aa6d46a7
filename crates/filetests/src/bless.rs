//! `CRANELIFT_TEST_BLESS=1`: rewrite a function's expectation comments in
//! place, as upstream's runner does.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context as _;
use cranelift_reader::Location;

/// Whether expectations are to be rewritten rather than checked.
pub fn enabled() -> bool {
    std::env::var("CRANELIFT_TEST_BLESS").is_ok_and(|v| v == "1")
}

/// Rewrites one file, function by function. Edits arrive in file order; the
/// line shift of earlier edits is carried to later ones.
pub struct FileUpdate {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    /// Lines added (negative: removed) by edits so far.
    line_shift: isize,
    /// The last original line an edit started at (edits must move forward).
    last_line: usize,
}

impl FileUpdate {
    /// Updates to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileUpdate {
            path: path.into(),
            state: Mutex::new(State {
                line_shift: 0,
                last_line: 0,
            }),
        }
    }

    /// Replace the comment block that follows the function at `location`
    /// with `output` (each line prefixed `; `), keeping upstream's layout:
    /// a blank line, the expectation, a blank line, then the next function.
    pub fn replace_expectation(&self, location: &Location, output: &[&str]) -> anyhow::Result<()> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| anyhow::anyhow!("bless state poisoned"))?;
        // As upstream, each function's expectation is rewritten at most once
        // and in file order: a precise-output file has one expectation per
        // function, so one with several targets cannot be blessed.
        anyhow::ensure!(
            location.line_number > state.last_line,
            "cannot bless the function on line {} again: a precise-output file \
             with several targets has one expectation per function",
            location.line_number
        );
        state.last_line = location.line_number;
        let text = std::fs::read_to_string(&self.path)
            .with_context(|| format!("reading {}", self.path.display()))?;
        let lines: Vec<&str> = text.lines().collect();
        let start = (location.line_number as isize - 1 + state.line_shift) as usize;
        anyhow::ensure!(
            start < lines.len(),
            "bless: line {} out of range",
            location.line_number
        );
        // The function runs to its closing brace at the start of a line.
        let close = (start..lines.len())
            .find(|&i| lines[i].starts_with('}'))
            .with_context(|| format!("no closing brace after line {}", location.line_number))?;
        let mut new = String::new();
        for line in &lines[..=close] {
            new.push_str(line);
            new.push('\n');
        }
        new.push('\n');
        for line in output {
            new.push(';');
            if !line.is_empty() {
                new.push(' ');
                new.push_str(line);
            }
            new.push('\n');
        }
        new.push('\n');
        // Drop the old expectation (comments and blank lines, but not `;;`
        // comments) up to the next real line.
        let mut rest = lines[close + 1..].iter().skip_while(|line| {
            line.trim().is_empty() || (line.starts_with(';') && !line.starts_with(";;"))
        });
        let old_len = lines.len();
        let mut kept = 0;
        for line in rest.by_ref() {
            new.push_str(line);
            new.push('\n');
            kept += 1;
        }
        let new_len = close + 1 + 1 + output.len() + 1 + kept;
        state.line_shift += new_len as isize - old_len as isize;
        if !text.ends_with('\n') && new.ends_with('\n') && kept > 0 {
            new.pop();
        }
        replace_file(&self.path, new.as_bytes())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Replace the contents of `path` with `bytes` atomically: written to a
/// file beside it (the target of a symbolic link, with the original's
/// permissions), flushed, then renamed over it. A process killed meanwhile
/// (the runner kills a worker at its time limit) leaves the old file whole,
/// never a truncated one.
fn replace_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let target = std::fs::canonicalize(path)?;
    let permissions = std::fs::metadata(&target)?.permissions();
    let dir = target.parent().unwrap_or(std::path::Path::new("."));
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{name}.bless-{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.set_permissions(permissions)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &target)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_renames_a_new_file_over_the_old_keeping_its_permissions_and_links() {
        let dir = std::env::temp_dir().join(format!("clif-exn-bless-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f.clif");
        std::fs::write(&file, "old\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
            let link = dir.join("link.clif");
            std::os::unix::fs::symlink(&file, &link).unwrap();
            // A reader that opened the file before still reads the old
            // contents whole: the new ones went to another file, renamed
            // over it, not written into this one (which a kill midway
            // would leave truncated).
            let mut before = std::fs::File::open(&file).unwrap();
            replace_file(&link, b"new\n").unwrap();
            let mut old = String::new();
            std::io::Read::read_to_string(&mut before, &mut old).unwrap();
            assert_eq!(old, "old\n");
            assert!(
                std::fs::symlink_metadata(&link)
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640);
        }
        #[cfg(not(unix))]
        replace_file(&file, b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new\n");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert!(names.iter().all(|n| !n.contains(".bless-")), "{names:?}");
        // A file that does not exist is an error, and creates nothing.
        assert!(replace_file(&dir.join("missing.clif"), b"x").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
