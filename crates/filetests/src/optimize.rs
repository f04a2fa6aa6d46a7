//! `test optimize`: each function through Cranelift's mid-end (the egraph
//! pass at the file's `opt_level`), the resulting CLIF checked with filecheck
//! directives or against a `precise-output` expectation.

use std::borrow::Cow;

use anyhow::Context as _;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::Function;
use cranelift_codegen::print_errors::pretty_error;
use cranelift_reader::TestCommand;

use crate::subtest::{Context, KindFacts, SubTest, check_output, set_flags};

/// `test optimize [precise-output]`.
struct TestOptimize {
    precise_output: bool,
}

/// The `optimize` kind for a `test optimize ...` line.
pub fn subtest(command: &TestCommand) -> anyhow::Result<Box<dyn SubTest>> {
    let mut test = TestOptimize {
        precise_output: false,
    };
    set_flags(command, &mut [("precise-output", &mut test.precise_output)])?;
    Ok(Box::new(test))
}

impl SubTest for TestOptimize {
    fn facts(&self) -> KindFacts {
        KindFacts::new("optimize").mutating().per_target()
    }

    fn run(&self, func: Cow<Function>, context: &Context) -> anyhow::Result<()> {
        let isa = context.isa.context("`test optimize` needs a target")?;
        let mut ctx = cranelift_codegen::Context::for_function(func.into_owned());
        ctx.optimize(isa, &mut ControlPlane::default())
            .map_err(|e| anyhow::anyhow!("{}", pretty_error(&ctx.func, e)))?;
        let text = ctx.func.display().to_string();
        check_output(&text, self.precise_output, context)
    }
}
