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
        std::fs::write(&self.path, new).with_context(|| format!("writing {}", self.path.display()))
    }
}
