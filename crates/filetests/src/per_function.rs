//! Test kinds that take no options and check each function on its own
//! (`alias-analysis`, `cat`, `domtree`, `print-cfg`, `verifier`): each is a
//! [`PerFunctionKind`], its facts as data and its check as a function.

use std::borrow::Cow;

use cranelift_codegen::ir::Function;
use cranelift_reader::TestCommand;

use crate::subtest::{Context, KindFacts, SubTest, expect_no_options};

/// A test kind that takes no options and checks each function on its own.
#[derive(Clone, Copy)]
pub struct PerFunctionKind {
    /// The kind's name and how it treats functions (never per target).
    pub facts: KindFacts,
    /// The check of one function.
    pub check: fn(Cow<Function>, &Context) -> anyhow::Result<()>,
}

impl PerFunctionKind {
    /// The kind `name` checking each function with `check`; its functions
    /// are verified first and not changed, unless said otherwise with
    /// [`Self::unverified`] or [`Self::mutating`].
    pub const fn new(
        name: &'static str,
        check: fn(Cow<Function>, &Context) -> anyhow::Result<()>,
    ) -> Self {
        PerFunctionKind {
            facts: KindFacts::new(name),
            check,
        }
    }

    /// The same kind, run on functions that need not pass the verifier.
    pub const fn unverified(self) -> Self {
        PerFunctionKind {
            facts: self.facts.unverified(),
            ..self
        }
    }

    /// The same kind, declared to change the functions it checks.
    pub const fn mutating(self) -> Self {
        PerFunctionKind {
            facts: self.facts.mutating(),
            ..self
        }
    }

    /// The kind for `command`, its `test` line, which must have no options.
    pub fn subtest(&self, command: &TestCommand) -> anyhow::Result<Box<dyn SubTest>> {
        expect_no_options(command, self.facts.name)?;
        Ok(Box::new(*self))
    }
}

impl SubTest for PerFunctionKind {
    fn facts(&self) -> KindFacts {
        self.facts
    }

    fn run(&self, func: Cow<Function>, context: &Context) -> anyhow::Result<()> {
        (self.check)(func, context)
    }
}
