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

use crate::per_function::PerFunctionKind;
use crate::subtest::Context;

/// The `verifier` kind; it takes no options. Its functions are not
/// verified first: that would fail exactly the functions it tests.
pub const KIND: PerFunctionKind = PerFunctionKind::new("verifier", check).unverified();

/// Match the verifier's errors with the `; error:` annotations, one to one.
fn check(func: Cow<Function>, context: &Context) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_fails_with, run_text, run_text_error};

    const BAD: &str = "test verifier

function %bad(i32) -> i32 {
block0(v0: i32):
    v1 = iconst.i64 1
    v2 = iadd v0, v1 ; error: arg 1 (v1) has type i64, expected i32
    return v2
}
";

    #[test]
    fn wrong_annotation_fails() {
        assert_fails_with(
            BAD,
            &[("has type i64", "has type i16")],
            &[
                "expected error",
                "<memory>.clif:6: inst",
                "unexpected error",
            ],
        );
    }

    #[test]
    fn missing_annotation_fails() {
        assert_fails_with(
            BAD,
            &[(" ; error: arg 1 (v1) has type i64, expected i32", "")],
            &["expected no error"],
        );
    }

    #[test]
    fn annotation_on_valid_function_fails() {
        let text = "test verifier

function %ok(i32) -> i32 {
block0(v0: i32):
    return v0 ; error: something
}
";
        let err = run_text_error(text);
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
