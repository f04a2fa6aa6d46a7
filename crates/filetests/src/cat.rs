//! `test cat`: parse each function, print it back, and check the text with
//! the file's filecheck directives. It tests the parser and the printer.

use std::borrow::Cow;

use cranelift_codegen::ir::Function;

use crate::per_function::PerFunctionKind;
use crate::subtest::{Context, run_filecheck};

/// The `cat` kind; it takes no options.
pub const KIND: PerFunctionKind = PerFunctionKind::new("cat", check).unverified();

/// Filecheck the function as printed.
fn check(func: Cow<Function>, context: &Context) -> anyhow::Result<()> {
    run_filecheck(&func.display().to_string(), context)
}

#[cfg(test)]
mod tests {
    use crate::test_support::{assert_fails_with, run_text};

    const TEXT: &str = "test cat

function %f(i32) -> i32 {
block10(v7: i32):
    v8 = iconst.i32 1
    v9 = iadd v7, v8
    return v9
}
; check: function %f(i32) -> i32 fast {
; nextln: block10(v7: i32):
; nextln:     v8 = iconst.i32 1
; nextln:     v9 = iadd v7, v8  ; v8 = 1
";

    #[test]
    fn printed_function_matches_and_a_wrong_check_fails() {
        assert_fails_with(
            TEXT,
            &[("v8 = iconst.i32 1", "v8 = iconst.i32 2")],
            &["filecheck failed"],
        );
    }

    #[test]
    fn invalid_ir_is_still_printed() {
        // `cat` does not run the verifier: a type error is no failure.
        let text = "test cat

function %f(i32) -> i32 {
block0(v0: i32):
    v1 = iconst.i64 1
    v2 = iadd v0, v1
    return v2
}
; check: v2 = iadd v0, v1
";
        run_text(text).unwrap();
    }

    #[test]
    fn options_are_rejected() {
        let cmd = cranelift_reader::TestCommand::new("cat foo");
        assert!(super::KIND.subtest(&cmd).is_err());
    }
}
