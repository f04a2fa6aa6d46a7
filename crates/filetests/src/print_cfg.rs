//! `test print-cfg`: print each function's control-flow graph in Graphviz
//! format and check it with the file's filecheck directives.

use std::borrow::Cow;

use cranelift_codegen::cfg_printer::CFGPrinter;
use cranelift_codegen::ir::Function;

use crate::per_function::PerFunctionKind;
use crate::subtest::{Context, run_filecheck};

/// The `print-cfg` kind; it takes no options.
pub const KIND: PerFunctionKind = PerFunctionKind::new("print-cfg", check).unverified();

/// Filecheck the function's CFG in Graphviz format.
fn check(func: Cow<Function>, context: &Context) -> anyhow::Result<()> {
    run_filecheck(&CFGPrinter::new(&func).to_string(), context)
}

#[cfg(test)]
mod tests {
    use crate::test_support::assert_fails_with;

    const TEXT: &str = "test print-cfg

function %f(i32) {
block0(v0: i32):
    brif v0, block1, block2
block1:
    jump block2
block2:
    return
}
; check: digraph \"%f\" {
; check: block0 [shape=record, label=\"{block0(v0: i32)
; check: block0:inst0 -> block1
; check: block0:inst0 -> block2
; check: block1:inst1 -> block2
; not: block2:inst
";

    #[test]
    fn graph_matches_and_a_wrong_edge_fails() {
        assert_fails_with(
            TEXT,
            &[("block1:inst1 -> block2", "block1:inst1 -> block0")],
            &["filecheck failed"],
        );
    }

    #[test]
    fn options_are_rejected() {
        let cmd = cranelift_reader::TestCommand::new("print-cfg x=1");
        assert!(super::KIND.subtest(&cmd).is_err());
    }
}
