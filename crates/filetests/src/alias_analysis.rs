//! `test alias-analysis`: run Cranelift's redundant-load elimination (alias
//! analysis) on each function and check the resulting CLIF with the file's
//! filecheck directives.

use std::borrow::Cow;

use anyhow::anyhow;
use cranelift_codegen::ir::Function;
use cranelift_codegen::print_errors::pretty_error;

use crate::per_function::PerFunctionKind;
use crate::subtest::{Context, run_filecheck};

/// The `alias-analysis` kind; it takes no options.
pub const KIND: PerFunctionKind = PerFunctionKind::new("alias-analysis", check).mutating();

/// Remove redundant loads, then filecheck the function.
fn check(func: Cow<Function>, context: &Context) -> anyhow::Result<()> {
    let mut ctx = cranelift_codegen::Context::for_function(func.into_owned());
    // The analysis walks the dominator tree, which needs the CFG.
    ctx.flowgraph();
    ctx.replace_redundant_loads()
        .map_err(|e| anyhow!("{}", pretty_error(&ctx.func, e)))?;
    run_filecheck(&ctx.func.display().to_string(), context)
}

#[cfg(test)]
mod tests {
    use crate::test_support::assert_fails_with;

    const TEXT: &str = "test alias-analysis
set opt_level=speed
target x86_64

function %f(i64) -> i32 {
block0(v0: i64):
    v1 = load.i32 v0
    v2 = load.i32 v0
    v3 = iadd v1, v2
    return v3
}
; check: v1 = load.i32 v0
; check: v2 -> v1
; not: v2 = load
";

    #[test]
    fn redundant_load_is_removed_unless_a_store_is_in_between() {
        // With a store to the same category between them, the second load
        // must stay: the same checks now fail.
        assert_fails_with(
            TEXT,
            &[(
                "    v2 = load.i32 v0\n",
                "    store.i32 v1, v0+4\n    v2 = load.i32 v0\n",
            )],
            &["filecheck failed"],
        );
    }

    #[test]
    fn options_are_rejected() {
        let cmd = cranelift_reader::TestCommand::new("alias-analysis precise-output");
        assert!(super::KIND.subtest(&cmd).is_err());
    }
}
