//! Checks that the README shows code exactly as a test compiles and runs
//! it: the test's source marks the example, the README holds it in a
//! ```` ```rust ```` block.

/// The lines of `source` (a test file's text) between the line
/// `// README-BEGIN` and the line `    // README-END`, with the four spaces
/// of the test function's body taken off each.
pub fn marked_example(source: &str) -> String {
    let start = source.find("// README-BEGIN\n").expect("begin marker") + "// README-BEGIN\n".len();
    let end = source.find("    // README-END").expect("end marker");
    source[start..end]
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The contents of the first ```` ```rust ```` block of `readme` after the
/// line holding `heading`.
pub fn rust_block_after<'a>(readme: &'a str, heading: &str) -> &'a str {
    let section = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has the section {heading:?}"));
    let start =
        readme[section..].find("```rust\n").expect("a rust block") + section + "```rust\n".len();
    let end = readme[start..].find("```\n").expect("the block ends") + start;
    &readme[start..end]
}
