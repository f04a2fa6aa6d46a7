//! `test interpret`: execute each `; run:` (and `; print:`) line of a file
//! with `cranelift-interpreter`, without compiling anything.
//!
//! All functions of the file go into one function store, so a function can
//! call another one of the same file. Calls to Cranelift libcalls (`%CeilF32`
//! ...) are answered by `libcall_handler`.

use std::borrow::Cow;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use anyhow::{Context as _, anyhow, bail};
use cranelift_codegen::data_value::DataValue;
use cranelift_codegen::ir::immediates::{Ieee32, Ieee64};
use cranelift_codegen::ir::{Function, LibCall};
use cranelift_codegen::settings::FlagsOrIsa;
use cranelift_interpreter::environment::FunctionStore;
use cranelift_interpreter::interpreter::{Interpreter, InterpreterState, LibCallValues};
use cranelift_interpreter::step::{ControlFlow, CraneliftTrap};
use cranelift_reader::{Details, RunCommand, TestCommand, TestFile, parse_run_command};

use crate::subtest::{
    Context, KindFacts, Printed, SourceFile, SubTest, expect_no_options, show_invocation,
    show_values,
};

/// The `interpret` kind; it takes no options.
struct TestInterpret {
    /// Output of `; print:` lines since the last `take_printed`.
    printed: Mutex<Vec<Printed>>,
}

/// Build the `interpret` kind from its `test` line.
pub fn subtest(command: &TestCommand) -> anyhow::Result<Box<dyn SubTest>> {
    expect_no_options(command, "interpret")?;
    Ok(Box::new(TestInterpret {
        printed: Mutex::new(Vec::new()),
    }))
}

impl SubTest for TestInterpret {
    fn facts(&self) -> KindFacts {
        KindFacts::new("interpret")
    }

    fn run_target(&self, file: &SourceFile, _target: FlagsOrIsa) -> anyhow::Result<()> {
        let store = function_store(file.testfile);
        for (func, details) in &file.testfile.functions {
            let place = Place {
                file_path: file.path,
                source: file.text,
                details,
            };
            self.run_commands(&store, func, &place)
                .with_context(|| format!("{}({})", self.name(), func.name))?;
        }
        Ok(())
    }

    fn run(&self, func: Cow<Function>, context: &Context) -> anyhow::Result<()> {
        // On its own a function can only call itself.
        let mut store = FunctionStore::default();
        store.add(func.name.to_string(), &func);
        let place = Place {
            file_path: context.file_path,
            source: context.source,
            details: context.details,
        };
        self.run_commands(&store, &func, &place)
    }

    fn take_printed(&self) -> Vec<Printed> {
        self.printed
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }
}

/// Where a function's run lines are: for messages and their line numbers.
struct Place<'a> {
    file_path: &'a str,
    source: &'a str,
    details: &'a Details<'a>,
}

/// Every function of the file, under its printed name (`%name`), which is
/// how the interpreter resolves calls between them.
fn function_store<'a>(testfile: &'a TestFile) -> FunctionStore<'a> {
    let mut store = FunctionStore::default();
    for (func, _) in &testfile.functions {
        store.add(func.name.to_string(), func);
    }
    store
}

impl TestInterpret {
    /// Execute the run commands in the comments of `func`; `; print:`
    /// output is kept for [`SubTest::take_printed`].
    fn run_commands(
        &self,
        store: &FunctionStore,
        func: &Function,
        place: &Place,
    ) -> anyhow::Result<()> {
        let file_path = place.file_path;
        let function_line = place.details.location.line_number;
        let mut search_from = function_line;
        for comment in &place.details.comments {
            let line = comment_line(place.source, search_from, comment.text);
            if let Some(line) = line {
                search_from = line + 1;
            }
            let where_ = || match line {
                Some(line) => format!("{file_path}:{line}: {}", comment.text),
                None => format!(
                    "{file_path}: function on line {function_line}: {}",
                    comment.text
                ),
            };
            let command = match parse_run_command(comment.text, &func.signature) {
                Ok(Some(command)) => command,
                Ok(None) => continue,
                Err(e) => bail!("{}: {}", where_(), e.message),
            };
            match &command {
                // Printed through the runner's report, not to stdout.
                RunCommand::Print(invocation) => {
                    let values = interpret_call(store, &invocation.func, &invocation.args)
                        .map_err(|e| anyhow!("{}: {e}", where_()))?;
                    let text = format!(
                        "{} -> {}",
                        show_invocation(&invocation.func, &invocation.args),
                        show_values(&values)
                    );
                    if let Ok(mut printed) = self.printed.lock() {
                        printed.push(Printed {
                            line: line.unwrap_or(function_line),
                            text,
                        });
                    }
                }
                RunCommand::Run(..) => command
                    .run(|name, args| interpret_call(store, name, args))
                    .map_err(|e| anyhow!("{}: {e}", where_()))?,
            }
        }
        Ok(())
    }
}

/// Call `name` (without its `%`) with `args` in a fresh interpreter, so no
/// state (memory, stack) leaks from one run line to the next.
fn interpret_call(
    store: &FunctionStore,
    name: &str,
    args: &[DataValue],
) -> Result<Vec<DataValue>, String> {
    let state = InterpreterState::default()
        .with_function_store(store.clone())
        .with_libcall_handler(libcall_handler);
    let qualified = format!("%{name}");
    UNSUPPORTED_LIBCALL.set(None);
    // The interpreter panics on a few inputs it does not implement; report
    // that as this run line's failure rather than taking the runner down.
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        Interpreter::new(state).call_by_name(&qualified, args)
    }))
    .map_err(|panic| {
        let message = cranelift_exn::error::panic_message(&*panic);
        format!("the interpreter panicked: {message}")
    })?;
    match outcome {
        Ok(ControlFlow::Return(results)) => Ok(results.to_vec()),
        Ok(ControlFlow::Trap(trap)) => match UNSUPPORTED_LIBCALL.take() {
            Some(libcall) => Err(format!(
                "libcall {libcall} is not supported by the interpreter's libcall handler"
            )),
            None => Err(format!("unexpected trap: {trap}")),
        },
        Ok(other) => Err(format!("unexpected control flow at return: {other:?}")),
        Err(e) => Err(format!("interpreter error: {e}")),
    }
}

thread_local! {
    /// The libcall [`libcall_handler`] last refused on this thread. The
    /// handler is a plain `fn` and can only answer with a trap; this lets
    /// the caller say which libcall was missing.
    static UNSUPPORTED_LIBCALL: Cell<Option<LibCall>> = const { Cell::new(None) };
}

/// The interpreter's answer to libcalls: the float rounding functions, fused
/// multiply-add and x86's `pshufb` fallback, computed on the host. The memory
/// libcalls (`Memcpy`, ...) cannot be served: the handler sees only values,
/// not the interpreter's memory.
fn libcall_handler(libcall: LibCall, args: LibCallValues) -> Result<LibCallValues, CraneliftTrap> {
    use DataValue::{F32, F64, V128};
    use LibCall::*;
    let f32v = |x: f32| F32(Ieee32::with_float(x));
    let f64v = |x: f64| F64(Ieee64::with_float(x));
    let result = match (libcall, &args[..]) {
        (CeilF32, [F32(a)]) => F32(a.ceil()),
        (CeilF64, [F64(a)]) => F64(a.ceil()),
        (FloorF32, [F32(a)]) => F32(a.floor()),
        (FloorF64, [F64(a)]) => F64(a.floor()),
        (TruncF32, [F32(a)]) => F32(a.trunc()),
        (TruncF64, [F64(a)]) => F64(a.trunc()),
        (NearestF32, [F32(a)]) => F32(a.round_ties_even()),
        (NearestF64, [F64(a)]) => F64(a.round_ties_even()),
        (FmaF32, [F32(a), F32(b), F32(c)]) => f32v(a.as_f32().mul_add(b.as_f32(), c.as_f32())),
        (FmaF64, [F64(a), F64(b), F64(c)]) => f64v(a.as_f64().mul_add(b.as_f64(), c.as_f64())),
        (X86Pshufb, [V128(a), V128(b)]) => {
            let mut out = [0u8; 16];
            for (o, &sel) in out.iter_mut().zip(b) {
                // A selector with its top bit set zeroes the lane.
                *o = if sel & 0x80 != 0 {
                    0
                } else {
                    a[usize::from(sel & 0x0f)]
                };
            }
            V128(out)
        }
        _ => {
            UNSUPPORTED_LIBCALL.set(Some(libcall));
            return Err(CraneliftTrap::UnreachableCodeReached);
        }
    };
    Ok(std::iter::once(result).collect())
}

/// The 1-based line of `source` at or after line `from_line` that holds
/// `text`, for messages.
fn comment_line(source: &str, from_line: usize, text: &str) -> Option<usize> {
    source
        .lines()
        .enumerate()
        .skip(from_line.saturating_sub(1))
        .find(|(_, line)| line.contains(text))
        .map(|(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_fails_with, run_text_error};

    const ADD: &str = "test interpret

function %add(i32, i32) -> i32 {
block0(v0: i32, v1: i32):
    v2 = iadd v0, v1
    return v2
}
";

    #[test]
    fn correct_expectation_passes_and_a_wrong_one_fails_naming_the_line() {
        let text = format!("{ADD}; run: %add(1, 2) == 3\n; run: %add(2, 2) == 4\n");
        assert_fails_with(
            &text,
            &[("%add(2, 2) == 4", "%add(2, 2) == 5")],
            &["%add(2, 2) == 5", "actual: 4"],
        );
    }

    #[test]
    fn functions_call_each_other() {
        let text = "test interpret

function %twice(i64) -> i64 {
block0(v0: i64):
    v1 = iadd v0, v0
    return v1
}

function %quad(i64) -> i64 {
    fn0 = %twice(i64) -> i64
block0(v0: i64):
    v1 = call fn0(v0)
    v2 = call fn0(v1)
    return v2
}
; run: %quad(5) == 20
; run: %quad(5) != 21
";
        assert_fails_with(
            text,
            &[("%quad(5) == 20", "%quad(5) == 10")],
            &["actual: 20"],
        );
    }

    #[test]
    fn libcalls_are_computed() {
        let text = "test interpret

function %ceil(f32) -> f32 {
    fn0 = %CeilF32(f32) -> f32
block0(v0: f32):
    v1 = call fn0(v0)
    return v1
}
; run: %ceil(0x0.5) == 0x1.0
; run: %ceil(-0x1.8) == -0x1.0

function %nearest(f64) -> f64 {
    fn0 = %NearestF64(f64) -> f64
block0(v0: f64):
    v1 = call fn0(v0)
    return v1
}
; run: %nearest(0x1.4) == 0x1.0
; run: %nearest(0x1.c) == 0x2.0

function %fma(f64, f64, f64) -> f64 {
    fn0 = %FmaF64(f64, f64, f64) -> f64
block0(v0: f64, v1: f64, v2: f64):
    v3 = call fn0(v0, v1, v2)
    return v3
}
; run: %fma(0x2.0, 0x3.0, 0x1.0) == 0x7.0
";
        assert_fails_with(
            text,
            &[("%ceil(0x0.5) == 0x1.0", "%ceil(0x0.5) == 0x0.0")],
            &["%ceil(0x0.5) == 0x0.0"],
        );
    }

    #[test]
    fn unsupported_libcall_is_named() {
        let text = "test interpret

function %m(i64, i64, i64) -> i64 {
    fn0 = %Memcpy(i64, i64, i64) -> i64
block0(v0: i64, v1: i64, v2: i64):
    v3 = call fn0(v0, v1, v2)
    return v3
}
; run: %m(0, 0, 0) == 0
";
        let err = run_text_error(text);
        assert!(err.contains("libcall Memcpy is not supported"), "{err}");
    }

    #[test]
    fn pshufb_selects_and_zeroes_lanes() {
        let a: [u8; 16] = std::array::from_fn(|i| i as u8 + 100);
        let mut b = [0u8; 16];
        b[0] = 3;
        b[1] = 0x80;
        b[2] = 0x1f; // only the low four bits select
        let out = libcall_handler(
            LibCall::X86Pshufb,
            [DataValue::V128(a), DataValue::V128(b)]
                .into_iter()
                .collect(),
        )
        .unwrap();
        let DataValue::V128(out) = out[0] else {
            panic!("not a vector: {out:?}")
        };
        assert_eq!(&out[..3], &[103, 0, 115]);
        assert_eq!(out[3], 100);
    }

    #[test]
    fn unknown_function_is_an_error() {
        let text = format!("{ADD}; run: %nope(1, 2) == 3\n");
        let err = run_text_error(&text);
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn options_are_rejected() {
        let file = cranelift_reader::parse_test(
            "test interpret foo\nfunction %f() {\nblock0:\n    return\n}\n",
            cranelift_reader::ParseOptions::default(),
        )
        .unwrap();
        assert!(subtest(&file.commands[0]).is_err());
    }
}
