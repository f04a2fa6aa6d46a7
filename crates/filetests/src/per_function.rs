//! Test kinds that take no options and check each function on its own
//! (`alias-analysis`, `cat`, `domtree`, `print-cfg`, `verifier`): each is a
//! [`PerFunctionKind`], its facts as data and its check as a function.

use std::borrow::Cow;

use cranelift_codegen::ir::Function;
use cranelift_reader::TestCommand;

use crate::subtest::{Context, SubTest, expect_no_options};

/// A test kind that takes no options and checks each function on its own.
#[derive(Clone, Copy)]
pub struct PerFunctionKind {
    /// The kind's name as written after `test`.
    pub name: &'static str,
    /// Whether the functions must pass the verifier before the check.
    pub needs_verifier: bool,
    /// Whether the check changes the function.
    pub is_mutating: bool,
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
            name,
            needs_verifier: true,
            is_mutating: false,
            check,
        }
    }

    /// The same kind, run on functions that need not pass the verifier.
    pub const fn unverified(self) -> Self {
        PerFunctionKind {
            needs_verifier: false,
            ..self
        }
    }

    /// The same kind, declared to change the functions it checks.
    pub const fn mutating(self) -> Self {
        PerFunctionKind {
            is_mutating: true,
            ..self
        }
    }

    /// The kind for `command`, its `test` line, which must have no options.
    pub fn subtest(&self, command: &TestCommand) -> anyhow::Result<Box<dyn SubTest>> {
        expect_no_options(command, self.name)?;
        Ok(Box::new(*self))
    }
}

impl SubTest for PerFunctionKind {
    fn name(&self) -> &'static str {
        self.name
    }

    fn needs_verifier(&self) -> bool {
        self.needs_verifier
    }

    fn is_mutating(&self) -> bool {
        self.is_mutating
    }

    fn run(&self, func: Cow<Function>, context: &Context) -> anyhow::Result<()> {
        (self.check)(func, context)
    }
}
