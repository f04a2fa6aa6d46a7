//! The interface every test kind implements, and the checks they share:
//! filecheck directives and `precise-output` expectations (with bless).

use std::borrow::Cow;

use anyhow::{Context as _, bail};
use cranelift_codegen::data_value::DataValue;
use cranelift_codegen::ir::Function;
use cranelift_codegen::isa::TargetIsa;
use cranelift_codegen::settings::{Flags, FlagsOrIsa};
use cranelift_reader::{Comment, Details, TestCommand, TestFile, TestOption};
use filecheck::{Checker, CheckerBuilder, NO_VARIABLES};
use serde::{Deserialize, Serialize};

use crate::bless::FileUpdate;

/// What a test kind sees of one function of one file, for one target.
pub struct Context<'a> {
    /// Comments before the first function: filecheck directives that apply
    /// to every function.
    pub preamble_comments: &'a [Comment<'a>],
    /// The function's location and comments, from the reader.
    pub details: &'a Details<'a>,
    /// Shared (ISA-independent) flags from the file's `set` lines.
    pub flags: &'a Flags,
    /// The target, for kinds whose `needs_isa` is true; for the others, the
    /// file's target when it has exactly one.
    pub isa: Option<&'a dyn TargetIsa>,
    /// The file, for messages.
    pub file_path: &'a str,
    /// The file's text, for finding the lines of comments (the reader keeps
    /// none for them).
    pub source: &'a str,
    /// Where `CRANELIFT_TEST_BLESS=1` writes new expectations.
    pub file_update: &'a FileUpdate,
}

impl<'a> Context<'a> {
    /// Flags and ISA in the shape Cranelift's verifier takes.
    pub fn flags_or_isa(&self) -> FlagsOrIsa<'a> {
        FlagsOrIsa {
            flags: self.flags,
            isa: self.isa,
        }
    }
}

/// What every test kind is given of a file, whatever the target.
pub struct SourceFile<'a> {
    /// The parsed file.
    pub testfile: &'a TestFile<'a>,
    /// Where `CRANELIFT_TEST_BLESS=1` writes new expectations.
    pub update: &'a FileUpdate,
    /// The path, for messages.
    pub path: &'a str,
    /// The file's text, for finding the lines of comments.
    pub text: &'a str,
}

impl SourceFile<'_> {
    /// Call `check` on each function of the file in turn, with its
    /// [`Context`] for `target`'s flags and ISA; stop at the first error, naming
    /// the test kind `kind` and the function in it.
    pub fn for_each_function(
        &self,
        kind: &str,
        target: FlagsOrIsa,
        mut check: impl FnMut(&Function, &Context) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        for (func, details) in &self.testfile.functions {
            let context = Context {
                preamble_comments: &self.testfile.preamble_comments,
                details,
                flags: target.flags,
                isa: target.isa,
                file_path: self.path,
                source: self.text,
                file_update: self.update,
            };
            check(func, &context).with_context(|| format!("{kind}({})", func.name))?;
        }
        Ok(())
    }
}

/// What the runner must know of a test kind before it runs it: its name
/// and how it treats functions and targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindFacts {
    /// The kind's name as written after `test`.
    pub name: &'static str,
    /// Whether the functions must pass the verifier before the test runs.
    pub needs_verifier: bool,
    /// Whether the test changes the functions (a hint to avoid clones).
    pub is_mutating: bool,
    /// Whether the test runs once per `target` line (true) or once per file.
    pub needs_isa: bool,
}

impl KindFacts {
    /// The kind `name`: its functions are verified first, not changed, and
    /// it runs once per file, unless said otherwise with
    /// [`Self::unverified`], [`Self::mutating`] or [`Self::per_target`].
    pub const fn new(name: &'static str) -> Self {
        KindFacts {
            name,
            needs_verifier: true,
            is_mutating: false,
            needs_isa: false,
        }
    }

    /// The same kind, run on functions that need not pass the verifier.
    pub const fn unverified(self) -> Self {
        KindFacts {
            needs_verifier: false,
            ..self
        }
    }

    /// The same kind, declared to change the functions it checks.
    pub const fn mutating(self) -> Self {
        KindFacts {
            is_mutating: true,
            ..self
        }
    }

    /// The same kind, run once per `target` line.
    pub const fn per_target(self) -> Self {
        KindFacts {
            needs_isa: true,
            ..self
        }
    }
}

/// One test kind (`compile`, `interpret`, `verifier`, ...), built from a
/// file's `test` line.
pub trait SubTest: Send + Sync {
    /// The kind's name and how it treats functions and targets.
    fn facts(&self) -> KindFacts;

    /// The kind's name as written after `test`.
    fn name(&self) -> &'static str {
        self.facts().name
    }

    /// Whether the function must pass the verifier before the test runs.
    fn needs_verifier(&self) -> bool {
        self.facts().needs_verifier
    }

    /// Whether the test changes the function (a hint to avoid clones).
    fn is_mutating(&self) -> bool {
        self.facts().is_mutating
    }

    /// Whether the test runs once per `target` line (true) or once per file.
    fn needs_isa(&self) -> bool {
        self.facts().needs_isa
    }

    /// Run the test for one target (or once, when `needs_isa` is false):
    /// by default on each function in turn. Kinds that need the whole file
    /// at once (`run`, `interpret`: functions call each other) override it.
    fn run_target(&self, file: &SourceFile, target: FlagsOrIsa) -> anyhow::Result<()> {
        file.for_each_function(self.name(), target, |func, context| {
            self.run(Cow::Borrowed(func), context)
        })
    }

    /// Run the test on one function.
    fn run(&self, func: Cow<Function>, context: &Context) -> anyhow::Result<()>;

    /// For kinds that execute code (`run`): what the last `run_target` call
    /// executed, taken by the runner for its per-target counts and messages.
    fn take_run_report(&self) -> Option<RunReport> {
        None
    }

    /// For kinds that execute `; print:` lines (`run`, `interpret`): their
    /// output from the last `run_target` call, in file order.
    fn take_printed(&self) -> Vec<Printed> {
        Vec::new()
    }
}

/// Check that `command` is a `test` line of the kind `kind` and has no
/// options, for the kinds that take none.
pub fn expect_no_options(command: &TestCommand, kind: &str) -> anyhow::Result<()> {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    anyhow::ensure!(
        command.command == kind,
        "not {article} {kind} command: {command}"
    );
    if !command.options.is_empty() {
        bail!("No options allowed on {command}");
    }
    Ok(())
}

/// Set the boolean of each flag among `command`'s options (`precise-output`
/// ...) from `flags`, a list of (flag, its boolean); an error naming the
/// first option that is not one of them.
pub fn set_flags(command: &TestCommand, flags: &mut [(&str, &mut bool)]) -> anyhow::Result<()> {
    for option in &command.options {
        let known = match option {
            TestOption::Flag(name) => flags.iter_mut().find(|(known, _)| known == name),
            TestOption::Value(..) => None,
        };
        let Some((_, flag)) = known else {
            bail!("unknown option `{option}`");
        };
        **flag = true;
    }
    Ok(())
}

/// The output of one `; print:` line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Printed {
    /// 1-based line of the `; print:` line.
    pub line: usize,
    /// `%f(args) -> values`.
    pub text: String,
}

/// `%f(1, 2)`: a run line's invocation as messages and `; print:` output
/// show it.
pub fn show_invocation(func: &str, args: &[DataValue]) -> String {
    let args: Vec<String> = args.iter().map(|v| v.to_string()).collect();
    format!("%{func}({})", args.join(", "))
}

/// Values as messages and `; print:` output show them: one value as itself,
/// several (or none) in brackets.
pub fn show_values(values: &[DataValue]) -> String {
    match values {
        [one] => one.to_string(),
        many => {
            let shown: Vec<String> = many.iter().map(|v| v.to_string()).collect();
            format!("[{}]", shown.join(", "))
        }
    }
}

/// What one target of a `test run` file did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunReport {
    /// How the target ran: `native`, `emulated` (unicorn), `qemu`, or `-`
    /// when it did not (a [`cranelift_exn::machine::MachineKind`] name).
    pub mode: String,
    /// Run and print lines that passed.
    pub passed: usize,
    /// Lines that failed (or the module that did not build).
    pub failures: Vec<RunFailure>,
    /// Output of `; print:` lines.
    pub printed: Vec<Printed>,
    /// Why the whole target was skipped, if it was.
    pub skipped: Option<String>,
    /// Run and print lines in the file (all skipped when `skipped` is set).
    pub lines: usize,
}

/// One run line (or module) that did not pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFailure {
    /// 1-based line of the run line or function; 0 when unknown.
    pub line: usize,
    /// The invocation (`%f(1, 2)`), or what was being done.
    pub invocation: String,
    /// What the file expects.
    pub expected: String,
    /// What happened.
    pub actual: String,
}

/// Check `text` against the filecheck directives (`check:`, `nextln:`, ...)
/// of the file's preamble and of the function's comments.
pub fn run_filecheck(text: &str, context: &Context) -> anyhow::Result<()> {
    let checker = build_filechecker(context)?;
    if checker
        .check(text, NO_VARIABLES)
        .context("filecheck failed")?
    {
        return Ok(());
    }
    let (_, explain) = checker
        .explain(text, NO_VARIABLES)
        .context("filecheck explain failed")?;
    bail!(
        "{}:{}: filecheck failed for the function on that line:\n{}{}",
        context.file_path,
        context.details.location.line_number,
        checker,
        explain
    )
}

/// Check the CLIF `text` a kind produced for the function: line by line
/// against its `precise-output` expectation when `precise_output`, else
/// with its filecheck directives.
pub fn check_output(text: &str, precise_output: bool, context: &Context) -> anyhow::Result<()> {
    if precise_output {
        let lines: Vec<&str> = text.lines().collect();
        check_precise_output(&lines, context)
    } else {
        run_filecheck(text, context)
    }
}

/// The filecheck directives of the preamble and of the function.
pub fn build_filechecker(context: &Context) -> anyhow::Result<Checker> {
    let mut builder = CheckerBuilder::new();
    for comment in context
        .preamble_comments
        .iter()
        .chain(&context.details.comments)
    {
        builder
            .directive(comment.text)
            .context("filecheck directive failed")?;
    }
    Ok(builder.finish())
}

/// Compare `actual` (lines without the `; ` prefix) with the function's
/// trailing comment block; on a mismatch, rewrite the file when
/// `CRANELIFT_TEST_BLESS=1`, else fail with a unified diff.
pub fn check_precise_output(actual: &[&str], context: &Context) -> anyhow::Result<()> {
    let expected: Vec<&str> = context
        .details
        .comments
        .iter()
        .filter(|c| !c.text.starts_with(";;"))
        .map(|c| {
            c.text
                .strip_prefix("; ")
                .or_else(|| c.text.strip_prefix(';'))
                .unwrap_or(c.text)
        })
        .collect();
    if actual == expected {
        return Ok(());
    }
    if crate::bless::enabled() {
        return context
            .file_update
            .replace_expectation(&context.details.location, actual);
    }
    let first_difference = expected
        .iter()
        .zip(actual)
        .position(|(e, a)| e != a)
        .unwrap_or(expected.len().min(actual.len()));
    let at = match expectation_line(context, first_difference) {
        Some(line) => format!("{}:{line}", context.file_path),
        None => format!("{} (end of the expectation)", context.file_path),
    };
    bail!(
        "compilation of function on line {} does not match\n\
         the text expectation; first difference at {at}\n\n{}\n\
         This test assertion can be automatically updated by setting the\n\
         CRANELIFT_TEST_BLESS=1 environment variable when running this test.",
        context.details.location.line_number,
        similar::TextDiff::from_slices(&expected, actual)
            .unified_diff()
            .header("expected", "actual")
    )
}

/// The file line of the `index`th expectation line of the function (its
/// comments after the closing brace, `;;` ones excepted), found in the
/// file's text: the reader keeps no line numbers for comments.
fn expectation_line(context: &Context, index: usize) -> Option<usize> {
    let text = context.source;
    let start = context.details.location.line_number;
    let mut lines = text.lines().enumerate().skip(start);
    lines.by_ref().find(|(_, l)| l.starts_with('}'))?;
    lines
        .take_while(|(_, l)| l.trim().is_empty() || l.starts_with(';'))
        .filter(|(_, l)| l.starts_with(';') && !l.starts_with(";;"))
        .nth(index)
        .map(|(i, _)| i + 1)
}
