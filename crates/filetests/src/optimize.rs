//! `test optimize`: each function through Cranelift's mid-end (the egraph
//! pass at the file's `opt_level`), the resulting CLIF checked with filecheck
//! directives or against a `precise-output` expectation.

use std::borrow::Cow;

use anyhow::{Context as _, bail};
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::Function;
use cranelift_codegen::print_errors::pretty_error;
use cranelift_reader::TestCommand;

use crate::subtest::{Context, SubTest, check_precise_output, run_filecheck, set_flags};

/// `test optimize [precise-output]`.
struct TestOptimize {
    precise_output: bool,
}

/// The `optimize` kind for a `test optimize ...` line.
pub fn subtest(command: &TestCommand) -> anyhow::Result<Box<dyn SubTest>> {
    let mut test = TestOptimize {
        precise_output: false,
    };
    if !set_flags(command, &mut [("precise-output", &mut test.precise_output)]) {
        bail!("unknown option on `{command}`");
    }
    Ok(Box::new(test))
}

impl SubTest for TestOptimize {
    fn name(&self) -> &'static str {
        "optimize"
    }

    fn is_mutating(&self) -> bool {
        true
    }

    fn needs_isa(&self) -> bool {
        true
    }

    fn run(&self, func: Cow<Function>, context: &Context) -> anyhow::Result<()> {
        let isa = context.isa.context("`test optimize` needs a target")?;
        let mut ctx = cranelift_codegen::Context::for_function(func.into_owned());
        ctx.optimize(isa, &mut ControlPlane::default())
            .map_err(|e| anyhow::anyhow!("{}", pretty_error(&ctx.func, e)))?;
        let text = ctx.func.display().to_string();
        if self.precise_output {
            let actual: Vec<&str> = text.lines().collect();
            check_precise_output(&actual, context)
        } else {
            run_filecheck(&text, context)
        }
    }
}
