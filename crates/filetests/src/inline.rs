//! `test inline [precise-output] [optimize]`: inline calls between the
//! functions of a file with Cranelift's inliner, optionally run the mid-end
//! afterwards, and check the resulting CLIF with filecheck directives or a
//! `precise-output` expectation.
//!
//! Functions are processed in file order; a call is inlined when its callee
//! is the function itself or one defined earlier in the file (as it stands
//! after its own inlining). Calls to anything else stay calls.

use std::borrow::Cow;
use std::collections::HashMap;

use anyhow::{Context as _, anyhow, bail};
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::inline::{Inline, InlineCommand};
use cranelift_codegen::ir::{self, ExternalName, Function, UserFuncName};
use cranelift_codegen::print_errors::{pretty_error, pretty_verifier_error};
use cranelift_codegen::settings::FlagsOrIsa;
use cranelift_reader::TestCommand;

use crate::subtest::{Context, KindFacts, SourceFile, SubTest, check_output, set_flags};

/// The functions available for inlining, by name.
type Callees = HashMap<UserFuncName, Function>;

/// `test inline [precise-output] [optimize]`.
#[derive(Default)]
struct TestInline {
    /// Compare with the comment block after each function, byte for byte.
    precise_output: bool,
    /// Run the mid-end optimizer after inlining.
    optimize: bool,
}

/// Build the `inline` kind from its `test` line.
pub fn subtest(command: &TestCommand) -> anyhow::Result<Box<dyn SubTest>> {
    let mut test = TestInline::default();
    let flags = &mut [
        ("precise-output", &mut test.precise_output),
        ("optimize", &mut test.optimize),
    ];
    set_flags(command, flags)?;
    Ok(Box::new(test))
}

impl SubTest for TestInline {
    fn facts(&self) -> KindFacts {
        KindFacts::new("inline").mutating().per_target()
    }

    fn run_target(&self, file: &SourceFile, target: FlagsOrIsa) -> anyhow::Result<()> {
        // Earlier functions of this file, for this target only.
        let mut callees = Callees::new();
        file.for_each_function(self.name(), target, |func, context| {
            self.inline_and_check(func.clone(), context, &mut callees)
        })
    }

    fn run(&self, func: Cow<Function>, context: &Context) -> anyhow::Result<()> {
        // On its own a function can only inline itself.
        self.inline_and_check(func.into_owned(), context, &mut Callees::new())
    }
}

impl TestInline {
    /// Inline into `func` from `callees` (then add `func` to them) and check
    /// the result.
    fn inline_and_check(
        &self,
        func: Function,
        context: &Context,
        callees: &mut Callees,
    ) -> anyhow::Result<()> {
        let isa = context.isa.context("`test inline` needs a target")?;
        let mut ctx = cranelift_codegen::Context::for_function(func);

        // The function as written is a candidate for its own calls and for
        // later functions' calls.
        callees.insert(ctx.func.name.clone(), ctx.func.clone());
        let mut inliner = Inliner {
            callees,
            inlined: 0,
            problem: None,
        };
        let inlined_any = ctx
            .inline(&mut inliner)
            .map_err(|e| anyhow!("{}", pretty_error(&ctx.func, e)))
            .context("error while inlining")?;
        if let Some(problem) = inliner.problem {
            bail!(
                "{}:{}: {problem}",
                context.file_path,
                context.details.location.line_number
            );
        }

        ctx.verify(context.flags_or_isa())
            .map_err(|errors| anyhow!("{}", pretty_verifier_error(&ctx.func, None, errors)))
            .context("CLIF verification error after inlining")?;

        if self.optimize {
            ctx.optimize(isa, &mut ControlPlane::default())
                .map_err(|e| anyhow!("{}", pretty_error(&ctx.func, e)))
                .context("error while optimizing")?;
        }

        let actual = if inlined_any {
            format!("{:?}", ctx.func)
        } else {
            format!("(no functions inlined into {})", ctx.func.name)
        };
        check_output(&actual, self.precise_output, context)
    }
}

/// More inlined calls than this into one function means runaway (recursive)
/// inlining, which Cranelift's inliner does not stop by itself.
const MAX_INLINED_CALLS: usize = 10_000;

/// Inlines every direct call whose callee is in the map.
struct Inliner<'a> {
    callees: &'a Callees,
    /// Calls inlined so far.
    inlined: usize,
    /// Why a call that should have been inlined was kept; reported after
    /// inlining, since the `Inline` trait cannot fail.
    problem: Option<String>,
}

impl Inline for Inliner<'_> {
    fn inline(
        &mut self,
        caller: &Function,
        call_inst: ir::Inst,
        _call_opcode: ir::Opcode,
        callee: ir::FuncRef,
        _call_args: &[ir::Value],
    ) -> InlineCommand<'_> {
        let ext_func = &caller.dfg.ext_funcs[callee];
        let name = match &ext_func.name {
            ExternalName::User(name_ref) => caller
                .params
                .user_named_funcs()
                .get(*name_ref)
                .map(|name| UserFuncName::User(name.clone())),
            ExternalName::TestCase(name) => Some(UserFuncName::Testcase(name.clone())),
            ExternalName::LibCall(_) | ExternalName::KnownSymbol(_) => None,
        };
        let Some(body) = name.and_then(|name| self.callees.get(&name)) else {
            return InlineCommand::KeepCall;
        };
        if self.problem.is_some() {
            return InlineCommand::KeepCall;
        }
        // Cranelift's inliner asserts these; check them so a bad file is an
        // error, not a panic.
        let declared = &caller.dfg.signatures[ext_func.signature];
        if *declared != body.signature {
            self.problem = Some(format!(
                "call {call_inst} to {}: declared signature {declared} differs from the definition's {}",
                body.name, body.signature
            ));
            return InlineCommand::KeepCall;
        }
        if body.layout.entry_block().is_none() {
            self.problem = Some(format!("callee {} has no blocks", body.name));
            return InlineCommand::KeepCall;
        }
        if self.inlined == MAX_INLINED_CALLS {
            self.problem = Some(format!(
                "more than {MAX_INLINED_CALLS} calls inlined into {}: recursive inlining?",
                caller.name
            ));
            return InlineCommand::KeepCall;
        }
        self.inlined += 1;
        InlineCommand::Inline {
            callee: Cow::Borrowed(body),
            visit_callee: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::{assert_fails_with, run_text, run_text_error};

    const TEXT: &str = "test inline precise-output
target x86_64

function %callee(i32) -> i32 {
block0(v0: i32):
    v1 = iconst.i32 1
    v2 = iadd v0, v1
    return v2
}

; (no functions inlined into %callee)

function %caller(i32) -> i32 {
    fn0 = %callee(i32) -> i32
block0(v0: i32):
    v1 = call fn0(v0)
    return v1
}

; function %caller(i32) -> i32 fast {
;     sig0 = (i32) -> i32 fast
;     fn0 = %callee sig0
;
; block0(v0: i32):
;     jump block1
;
; block1:
;     v3 = iconst.i32 1
;     v4 = iadd.i32 v0, v3  ; v3 = 1
;     jump block2(v4)
;
; block2(v2: i32):
;     v1 -> v2
;     return v1
; }
";

    #[test]
    fn exact_output_passes_and_a_wrong_line_fails_with_a_diff() {
        assert_fails_with(
            TEXT,
            &[(";     v4 = iadd.i32", ";     v4 = isub.i32")],
            &[
                "-    v4 = isub.i32 v0, v3  ; v3 = 1",
                "+    v4 = iadd.i32 v0, v3  ; v3 = 1",
            ],
        );
    }

    /// `%callee(x)`: `x + 7`.
    const CALLEE: &str = "
function %callee(i32) -> i32 {
block0(v0: i32):
    v1 = iconst.i32 7
    v2 = iadd v0, v1
    return v2
}
";

    /// `%caller(x)`: `%callee(x)`, which should be inlined.
    const CALLER: &str = "
function %caller(i32) -> i32 {
    fn0 = %callee(i32) -> i32
block0(v0: i32):
    v1 = call fn0(v0)
    return v1
}
; check: iconst.i32 7
; not: call
";

    #[test]
    fn filecheck_mode() {
        // The filecheck lines attach to %caller; %callee has none.
        run_text(&format!("test inline\ntarget x86_64\n{CALLEE}{CALLER}")).unwrap();
        // A callee defined after its caller is not inlined.
        let swapped = format!("test inline\ntarget x86_64\n{CALLER}{CALLEE}");
        let err = run_text_error(&swapped);
        assert!(err.contains("filecheck failed"), "{err}");
    }

    #[test]
    fn options() {
        use cranelift_reader::TestCommand;
        assert!(super::subtest(&TestCommand::new("inline precise-output optimize")).is_ok());
        assert!(super::subtest(&TestCommand::new("inline fast")).is_err());
    }

    #[test]
    fn signature_mismatch_is_an_error() {
        // %caller, now on i64, declares %callee with i64 where it takes and
        // returns i32.
        let text = format!("test inline\ntarget x86_64\n{CALLEE}{CALLER}");
        assert_fails_with(
            &text,
            &[
                ("%caller(i32) -> i32", "%caller(i64) -> i64"),
                ("fn0 = %callee(i32) -> i32", "fn0 = %callee(i64) -> i64"),
                (
                    "block0(v0: i32):\n    v1 = call",
                    "block0(v0: i64):\n    v1 = call",
                ),
            ],
            &[
                "<memory>.clif:11: call inst0 to %callee",
                "differs from the definition",
            ],
        );
    }

    #[test]
    fn recursion_is_bounded() {
        // %caller calling itself.
        let text = format!("test inline\ntarget x86_64\n{CALLEE}{CALLER}");
        assert_fails_with(
            &text,
            &[("fn0 = %callee", "fn0 = %caller")],
            &["recursive inlining"],
        );
    }
}
