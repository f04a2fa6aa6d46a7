//! Mutated filetests: whatever the text, `clif-exn test` reports every file
//! once and ends with status 0 or 1, and no panic comes from this project's
//! code (Cranelift's own panics on malformed input are caught, reported as
//! failures of their file, and located in its crates).
//!
//! The mutants come from this repository's `filetests/` by a fixed seed:
//! lines deleted, duplicated and swapped, numbers replaced by boundary
//! values, words replaced by other words of the file, bytes inserted.
//! For a longer campaign, the environment sets another corpus (a relative
//! path is the repository root's), count and seed:
//!
//! ```text
//! CRANELIFT_EXN_MUTANT_SOURCES=/path/to/wasmtime/cranelift/filetests/filetests \
//! CRANELIFT_EXN_MUTANTS=5000 CRANELIFT_EXN_MUTANT_SEED=7 \
//!     cargo test --release -p clif-exn --test mutants
//! ```

mod common;

use std::path::Path;

use common::{clif_exn_test, repo, stderr, stdout};

/// The mutants made and run (`CRANELIFT_EXN_MUTANTS` sets another count).
const MUTANTS: usize = 400;

/// The seed (`CRANELIFT_EXN_MUTANT_SEED` sets another).
const SEED: u64 = 0x5eed;

/// `name` from the environment, parsed, or `default`.
fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
        Err(_) => default,
    }
}

/// Numbers that reach limits: sign, width, entity counts.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "255",
    "65536",
    "2147483647",
    "-2147483648",
    "4294967295",
    "9223372036854775807",
    "18446744073709551615",
    "99999",
    "100000",
    "0x7fffffff",
    "-0x1",
];

/// Bytes inserted: syntax characters, a NUL, a non-ASCII byte's text.
const INSERTED: &[&str] = &[
    "(", ")", "{", "}", ",", "=", ";", "%", "\0", "é", "\n", "-", ".",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `lines`.
fn mutate(lines: &mut Vec<String>, rng: &mut Rng) {
    if lines.is_empty() {
        lines.push(String::new());
    }
    let i = rng.below(lines.len());
    // Numbers most often: those mutants still parse and run.
    match rng.below(10) {
        0 => {
            lines.remove(i);
        }
        1 => {
            let line = lines[i].clone();
            lines.insert(i, line);
        }
        2 => {
            let j = rng.below(lines.len());
            lines.swap(i, j);
        }
        3..=6 => {
            // The first run of digits in the line from a random column.
            let line = &lines[i];
            let from = rng.below(line.len() + 1);
            let start = line
                .char_indices()
                .skip_while(|&(k, _)| k < from)
                .find(|(_, c)| c.is_ascii_digit())
                .map(|(k, _)| k);
            if let Some(start) = start {
                let end = line[start..]
                    .find(|c: char| !c.is_ascii_alphanumeric())
                    .map_or(line.len(), |e| start + e);
                let number = NUMBERS[rng.below(NUMBERS.len())];
                lines[i] = format!("{}{number}{}", &line[..start], &line[end..]);
            }
        }
        7 | 8 => {
            let words: Vec<String> = lines
                .iter()
                .flat_map(|l| l.split_whitespace().map(str::to_string))
                .collect();
            let targets: Vec<&str> = lines[i].split_whitespace().collect();
            if !words.is_empty() && !targets.is_empty() {
                let target = targets[rng.below(targets.len())].to_string();
                let word = &words[rng.below(words.len())];
                lines[i] = lines[i].replacen(&target, word, 1);
            }
        }
        _ => {
            let line = &lines[i];
            let boundaries: Vec<usize> = line
                .char_indices()
                .map(|(k, _)| k)
                .chain([line.len()])
                .collect();
            let at = boundaries[rng.below(boundaries.len())];
            let inserted = INSERTED[rng.below(INSERTED.len())];
            lines[i] = format!("{}{inserted}{}", &line[..at], &line[at..]);
        }
    }
}

fn clif_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            clif_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "clif") {
            out.push(path);
        }
    }
}

/// Whether a panic location (`cranelift-codegen-0.135.8/src/...`) lies in
/// a crate from the registry: its first component is `name-VERSION`.
fn in_registry_crate(location: &str) -> bool {
    let first = location.split('/').next().unwrap_or_default();
    first
        .rsplit_once('-')
        .is_some_and(|(_, version)| version.starts_with(|c: char| c.is_ascii_digit()))
}

#[test]
fn mutated_filetests_are_reported_without_panics_of_ours() {
    // A relative path is the repository root's (tests run in the crate's
    // directory).
    let corpus = repo().join(
        std::env::var_os("CRANELIFT_EXN_MUTANT_SOURCES").unwrap_or_else(|| "filetests".into()),
    );
    let mutants = setting("CRANELIFT_EXN_MUTANTS", MUTANTS);
    let mut sources = Vec::new();
    clif_files(&corpus, &mut sources);
    assert!(sources.len() >= 20, "{}: {sources:?}", corpus.display());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mutants");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(setting("CRANELIFT_EXN_MUTANT_SEED", SEED));
    for n in 0..mutants {
        let source = &sources[rng.below(sources.len())];
        let text = std::fs::read_to_string(source).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        for _ in 0..=rng.below(2) {
            mutate(&mut lines, &mut rng);
        }
        let name = source.file_stem().unwrap().to_string_lossy();
        let path = dir.join(format!("{n:05}-{name}.clif"));
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }
    // And one whose failing expectation holds control characters.
    let escapes = "test compile precise-output\ntarget x86_64\n\n\
                   function %f() -> i64 {\nblock0:\n    v0 = iconst.i64 1\n    \
                   return v0\n}\n\n; VCode:\n; mov\0q \x1b[2J\n";
    std::fs::write(dir.join("escapes.clif"), escapes).unwrap();
    let output = clif_exn_test(&["-j", "2", "--timeout", "10"], &[&dir]);
    let text = stdout(&output);
    let errors = stderr(&output);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{:?}\n{text}{errors}",
        output.status
    );
    assert!(
        text.contains(&format!("{} files: ", mutants + 1)),
        "every mutant reported once:\n{text}"
    );
    // The mutants' control characters, echoed, come out as escapes.
    assert!(text.contains("mov\\u{0}q \\u{1b}[2J"), "{text}");
    assert!(
        !text.contains(|c: char| c.is_control() && c != '\n' && c != '\t'),
        "{text}"
    );
    for line in text.lines().chain(errors.lines()) {
        if let Some(location) = line.trim().strip_prefix("panic at ") {
            assert!(
                in_registry_crate(location),
                "a panic of ours: {line}\n{text}"
            );
        }
        assert!(!line.contains("panicked at"), "{line}\n{errors}");
    }
}

#[test]
fn registry_locations_are_told_from_ours() {
    assert!(in_registry_crate(
        "cranelift-interpreter-0.135.8/src/environment.rs:30:9: no function"
    ));
    assert!(!in_registry_crate("src/module/mod.rs:10:5: oops"));
    assert!(!in_registry_crate("crates/filetests/src/run.rs:1:1: oops"));
}
