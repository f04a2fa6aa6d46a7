//! `test compile`: each function through the whole code generator, checked
//! with filecheck directives, against a `precise-output` expectation (VCode
//! and capstone disassembly, in upstream's layout), or expected to fail
//! (`expect-fail`).

use std::borrow::Cow;

use anyhow::{Context as _, bail};
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::Function;
use cranelift_codegen::isa::TargetIsa;
use cranelift_codegen::print_errors::pretty_error;
use cranelift_codegen::settings::FlagsOrIsa;
use cranelift_reader::TestCommand;

use crate::subtest::{
    Context, KindFacts, SourceFile, SubTest, check_precise_output, run_filecheck, set_flags,
};

/// `test compile [precise-output] [expect-fail]`.
struct TestCompile {
    precise_output: bool,
    expect_fail: bool,
}

/// The `compile` kind for a `test compile ...` line.
pub fn subtest(command: &TestCommand) -> anyhow::Result<Box<dyn SubTest>> {
    let mut test = TestCompile {
        precise_output: false,
        expect_fail: false,
    };
    let flags = &mut [
        ("precise-output", &mut test.precise_output),
        ("expect-fail", &mut test.expect_fail),
    ];
    set_flags(command, flags)?;
    Ok(Box::new(test))
}

impl SubTest for TestCompile {
    fn facts(&self) -> KindFacts {
        KindFacts::new("compile").mutating().per_target()
    }

    fn run_target(&self, file: &SourceFile, target: FlagsOrIsa) -> anyhow::Result<()> {
        let isa = target.isa.context("`test compile` needs a target")?;
        // One disassembler for all functions of this target: building one
        // costs more than disassembling a small function.
        let capstone = self.disassembler(isa)?;
        file.for_each_function(self.name(), target, |func, context| {
            self.compile_one(func.clone(), context, capstone.as_ref())
        })
    }

    fn run(&self, func: Cow<Function>, context: &Context) -> anyhow::Result<()> {
        let isa = context.isa.context("`test compile` needs a target")?;
        let capstone = self.disassembler(isa)?;
        self.compile_one(func.into_owned(), context, capstone.as_ref())
    }
}

impl TestCompile {
    /// The disassembler `precise-output` needs (none otherwise).
    fn disassembler(&self, isa: &dyn TargetIsa) -> anyhow::Result<Option<capstone::Capstone>> {
        if !self.precise_output || self.expect_fail {
            return Ok(None);
        }
        isa.to_capstone()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("no disassembler for {}: {e}", isa.name()))
    }

    fn compile_one(
        &self,
        func: Function,
        context: &Context,
        capstone: Option<&capstone::Capstone>,
    ) -> anyhow::Result<()> {
        let isa = context.isa.context("`test compile` needs a target")?;
        let params = func.params.clone();
        let mut ctx = cranelift_codegen::Context::for_function(func);
        ctx.set_disasm(true);
        let result = ctx.compile(isa, &mut ControlPlane::default());
        if self.expect_fail {
            return match result {
                Ok(_) => bail!(
                    "function on line {} compiled, but `expect-fail` expects an error",
                    context.details.location.line_number
                ),
                Err(_) => Ok(()),
            };
        }
        let compiled = result.map_err(|e| anyhow::anyhow!("{}", pretty_error(e.func, e.inner)))?;
        let vcode = compiled
            .vcode
            .as_deref()
            .context("the backend produced no VCode text")?;
        match capstone {
            Some(cs) => {
                let disassembly = compiled.disassemble(Some(&params), cs)?;
                let actual: Vec<&str> = std::iter::once("VCode:")
                    .chain(vcode.lines())
                    .chain(["", "Disassembled:"])
                    .chain(disassembly.lines())
                    .collect();
                check_precise_output(&actual, context)
            }
            None => run_filecheck(vcode, context),
        }
    }
}
