//! `test verifier`: run Cranelift's IR verifier and compare its errors with
//! the `; error: <text>` annotations of the file.
//!
//! An annotation follows the entity it concerns (usually on the same line as
//! an instruction) and expects an error on that entity whose message contains
//! `<text>`. Every expected error must be reported, and no other error may be.

use std::borrow::Cow;
use std::fmt::Write as _;

use anyhow::bail;
use cranelift_codegen::ir::Function;
use cranelift_codegen::ir::entities::AnyEntity;
use cranelift_codegen::verify_function;
use cranelift_reader::TestCommand;

use crate::subtest::{Context, SubTest};

/// The `verifier` kind; it takes no options.
struct TestVerifier;

/// Build the `verifier` kind from its `test` line.
pub fn subtest(command: &TestCommand) -> anyhow::Result<Box<dyn SubTest>> {
    anyhow::ensure!(
        command.command == "verifier",
        "not a verifier command: {command}"
    );
    if !command.options.is_empty() {
        bail!("No options allowed on {command}");
    }
    Ok(Box::new(TestVerifier))
}

impl SubTest for TestVerifier {
    fn name(&self) -> &'static str {
        "verifier"
    }

    fn needs_verifier(&self) -> bool {
        // Verifying first would fail exactly the functions this kind tests.
        false
    }

    fn run(&self, func: Cow<Function>, context: &Context) -> anyhow::Result<()> {
        let expected: Vec<(AnyEntity, &str)> = context
            .details
            .comments
            .iter()
            .filter_map(|c| match_directive(c.text, "error:").map(|tail| (c.entity, tail)))
            .collect();
        // Where an entity is defined, for messages (`file:line`).
        let at = |entity: AnyEntity| match context.details.map.location(entity) {
            Some(loc) => format!("{}:{}: {entity}", context.file_path, loc.line_number),
            None => format!(
                "{}: function on line {}: {entity}",
                context.file_path, context.details.location.line_number
            ),
        };

        let mut errors = match verify_function(&func, context.flags_or_isa()) {
            Ok(()) if expected.is_empty() => return Ok(()),
            Ok(()) => {
                let mut msg = String::from("verifier passed, but errors were expected:\n");
                for (entity, text) in &expected {
                    let _ = writeln!(msg, "  {}: {text}", at(*entity));
                }
                bail!(msg)
            }
            Err(errors) => errors.0,
        };

        let mut msg = String::new();
        if expected.is_empty() {
            msg.push_str("expected no error, but got:\n");
        }
        // Each annotation consumes one matching error.
        for (entity, text) in &expected {
            match errors
                .iter()
                .position(|e| e.location == *entity && e.message.contains(text))
            {
                Some(pos) => {
                    errors.swap_remove(pos);
                }
                None => {
                    let _ = writeln!(msg, "  expected error {}: {text}", at(*entity));
                }
            }
        }
        for error in &errors {
            let _ = writeln!(msg, "  unexpected error {error}");
        }
        if msg.is_empty() { Ok(()) } else { bail!(msg) }
    }
}

/// The text after `directive` (which ends in `:`) in a comment such as
/// `; error: message`, trimmed; `None` when the comment is not that
/// directive. Any number of leading `;` is accepted.
pub(crate) fn match_directive<'a>(comment: &'a str, directive: &str) -> Option<&'a str> {
    comment
        .trim_start_matches(';')
        .trim_start()
        .strip_prefix(directive)
        .map(str::trim)
}

/// A small in-memory driver for the unit tests of the kinds in this crate:
/// parse a file, then run each of its `test` lines as the runner would
/// (verifier first when the kind needs it; once per target when it needs an
/// ISA).
#[cfg(test)]
pub(crate) mod test_support {
    use anyhow::{Context as _, anyhow, bail};
    use cranelift_codegen::print_errors::pretty_verifier_error;
    use cranelift_codegen::settings::FlagsOrIsa;
    use cranelift_codegen::verify_function;
    use cranelift_reader::{IsaSpec, ParseOptions, TestCommand, parse_test};

    use crate::bless::FileUpdate;
    use crate::subtest::SubTest;

    /// The kinds of this part of the crate, by name.
    fn new_subtest(command: &TestCommand) -> anyhow::Result<Box<dyn SubTest>> {
        match command.command {
            "interpret" => crate::interpret::subtest(command),
            "verifier" => super::subtest(command),
            "inline" => crate::inline::subtest(command),
            "alias-analysis" => crate::alias_analysis::subtest(command),
            "domtree" => crate::domtree::subtest(command),
            "cat" => crate::cat::subtest(command),
            "print-cfg" => crate::print_cfg::subtest(command),
            other => bail!("unknown test kind {other}"),
        }
    }

    /// Run every test of the CLIF file `text`.
    pub(crate) fn run_text(text: &str) -> anyhow::Result<()> {
        let file_path = "<memory>.clif";
        let testfile =
            parse_test(text, ParseOptions::default()).map_err(|e| anyhow!("parse: {e}"))?;
        let file_update = FileUpdate::new(file_path);
        let flags = match &testfile.isa_spec {
            IsaSpec::None(flags) => flags,
            IsaSpec::Some(isas) => isas.last().context("no ISA")?.flags(),
        };
        let unique = testfile.isa_spec.unique_isa();
        for command in &testfile.commands {
            let test = new_subtest(command)?;
            if test.needs_verifier() {
                for (func, _) in &testfile.functions {
                    let fisa = FlagsOrIsa { flags, isa: unique };
                    verify_function(func, fisa)
                        .map_err(|e| anyhow!("{}", pretty_verifier_error(func, None, e)))?;
                }
            }
            match (&testfile.isa_spec, test.needs_isa()) {
                (IsaSpec::Some(isas), true) => {
                    for isa in isas {
                        test.run_target(
                            &testfile,
                            &file_update,
                            file_path,
                            text,
                            isa.flags(),
                            Some(&**isa),
                        )?;
                    }
                }
                (IsaSpec::None(_), true) => bail!("test {} requires an ISA", test.name()),
                (_, false) => {
                    test.run_target(&testfile, &file_update, file_path, text, flags, unique)?
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::run_text;
    use super::*;

    const BAD: &str = "test verifier

function %bad(i32) -> i32 {
block0(v0: i32):
    v1 = iconst.i64 1
    v2 = iadd v0, v1 ; error: arg 1 (v1) has type i64, expected i32
    return v2
}
";

    #[test]
    fn matching_annotation_passes() {
        run_text(BAD).unwrap();
    }

    #[test]
    fn wrong_annotation_fails() {
        let wrong = BAD.replace("has type i64", "has type i16");
        let err = format!("{:#}", run_text(&wrong).unwrap_err());
        assert!(err.contains("expected error"), "{err}");
        assert!(err.contains("<memory>.clif:6: inst"), "{err}");
        assert!(err.contains("unexpected error"), "{err}");
    }

    #[test]
    fn missing_annotation_fails() {
        let wrong = BAD.replace(" ; error: arg 1 (v1) has type i64, expected i32", "");
        let err = format!("{:#}", run_text(&wrong).unwrap_err());
        assert!(err.contains("expected no error"), "{err}");
    }

    #[test]
    fn annotation_on_valid_function_fails() {
        let text = "test verifier

function %ok(i32) -> i32 {
block0(v0: i32):
    return v0 ; error: something
}
";
        let err = format!("{:#}", run_text(text).unwrap_err());
        assert!(
            err.contains("verifier passed, but errors were expected"),
            "{err}"
        );
        run_text(&text.replace(" ; error: something", "")).unwrap();
    }

    #[test]
    fn directive_matching() {
        assert_eq!(match_directive("; error: bad  ", "error:"), Some("bad"));
        assert_eq!(match_directive(";;; error:bad", "error:"), Some("bad"));
        assert_eq!(match_directive("; errors: bad", "error:"), None);
        assert_eq!(match_directive(";x error: bad", "error:"), None);
    }
}
