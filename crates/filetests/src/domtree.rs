//! `test domtree`: compute each function's dominator tree and compare it with
//! the `; dominates: blockN ...` annotations, then check a printed form of
//! the tree (CFG post-order and dominator-tree pre-order) with the file's
//! filecheck directives.
//!
//! An annotation on an instruction says that the instruction's block is the
//! immediate dominator of each block listed. Blocks without an annotation
//! (other than the entry) must be unreachable.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::bail;
use cranelift_codegen::dominator_tree::DominatorTree;
use cranelift_codegen::flowgraph::ControlFlowGraph;
use cranelift_codegen::ir::Function;
use cranelift_codegen::ir::entities::AnyEntity;

use crate::per_function::PerFunctionKind;
use crate::subtest::{Context, run_filecheck};
use crate::verifier::match_directive;

/// The `domtree` kind; it takes no options.
pub const KIND: PerFunctionKind = PerFunctionKind::new("domtree", check);

/// Compare the dominator tree with the annotations, then filecheck it.
fn check(func: Cow<Function>, context: &Context) -> anyhow::Result<()> {
    let cfg = ControlFlowGraph::with_function(&func);
    let domtree = DominatorTree::with_function(&func, &cfg);
    let details = context.details;
    let at = |entity: AnyEntity| match details.map.location(entity) {
        Some(loc) => format!("{}:{}", context.file_path, loc.line_number),
        None => format!(
            "{}: function on line {}",
            context.file_path, details.location.line_number
        ),
    };

    // Block -> the block its annotation names as immediate dominator.
    let mut expected = HashMap::new();
    for comment in &details.comments {
        let Some(tail) = match_directive(comment.text, "dominates:") else {
            continue;
        };
        let AnyEntity::Inst(inst) = comment.entity else {
            bail!(
                "{}: annotation on non-instruction {}: {}",
                at(comment.entity),
                comment.entity,
                comment.text
            );
        };
        let Some(dominator) = func.layout.inst_block(inst) else {
            bail!(
                "{}: instruction {inst} is not in the layout",
                at(comment.entity)
            );
        };
        for name in tail.split_whitespace() {
            let Some(AnyEntity::Block(block)) = details.map.lookup_str(name) else {
                bail!(
                    "{}: expected a defined block, got {name}",
                    at(comment.entity)
                );
            };
            if expected.insert(block, dominator).is_some() {
                bail!("{}: multiple dominators for {name}", at(comment.entity));
            }
            match domtree.idom(block) {
                Some(got) if got == dominator => {}
                Some(got) => bail!(
                    "{}: mismatching idoms for {name}:\nwant: {inst} (in {dominator}), got: {got}",
                    at(comment.entity)
                ),
                None => bail!(
                    "{}: mismatching idoms for {name}:\nwant: {inst} (in {dominator}), got: unreachable",
                    at(comment.entity)
                ),
            }
        }
    }

    // Every other block but the entry must have no dominator at all.
    for block in func.layout.blocks().skip(1) {
        if expected.contains_key(&block) {
            continue;
        }
        if let Some(got) = domtree.idom(block) {
            bail!(
                "{}: mismatching idoms for {block}:\nwant: unreachable (no annotation), got: {got}",
                at(AnyEntity::Block(block))
            );
        }
    }

    run_filecheck(&domtree_text(&func, &domtree), context)
}

/// The tree as text for filecheck: a `cfg_postorder:` line, then the
/// dominator tree in pre-order, one block and its children per line.
fn domtree_text(func: &Function, domtree: &DominatorTree) -> String {
    let mut s = String::from("cfg_postorder:");
    for block in domtree.cfg_postorder() {
        let _ = write!(s, " {block}");
    }
    s.push_str("\ndomtree_preorder {\n");
    let mut stack: Vec<_> = func.layout.entry_block().into_iter().collect();
    while let Some(block) = stack.pop() {
        let _ = write!(s, "    {block}:");
        let first_child = stack.len();
        for child in domtree.children(block) {
            let _ = write!(s, " {child}");
            stack.push(child);
        }
        s.push('\n');
        // Visit the children in order: the first pushed must pop first.
        stack[first_child..].reverse();
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use crate::test_support::assert_fails_with;

    const TEXT: &str = "test domtree

function %f(i32) {
block0(v0: i32):
    brif v0, block1, block2 ; dominates: block1 block2 block3
block1:
    jump block3
block2:
    jump block3
block3:
    return
}
; check: cfg_postorder:
; sameln: block3
; sameln: block0
; check: domtree_preorder {
; nextln: block0: block2 block1 block3
; nextln: block2:
; nextln: block1:
; nextln: block3:
; nextln: }
";

    /// `block0`'s annotation in [`TEXT`].
    const DOMINATES_ALL: &str = "; dominates: block1 block2 block3";

    #[test]
    fn wrong_dominator_fails() {
        // block3 is reached from block1 and block2, so block1 does not
        // dominate it.
        assert_fails_with(
            TEXT,
            &[
                (DOMINATES_ALL, "; dominates: block1 block2"),
                (
                    "    jump block3\nblock2:",
                    "    jump block3 ; dominates: block3\nblock2:",
                ),
            ],
            &["mismatching idoms for block3", "<memory>.clif:7"],
        );
    }

    #[test]
    fn missing_annotation_fails() {
        assert_fails_with(
            TEXT,
            &[(DOMINATES_ALL, "; dominates: block1 block2")],
            &["want: unreachable"],
        );
    }

    #[test]
    fn wrong_filecheck_line_fails() {
        assert_fails_with(
            TEXT,
            &[(
                "block0: block2 block1 block3",
                "block0: block1 block2 block3",
            )],
            &["filecheck failed"],
        );
    }
}
