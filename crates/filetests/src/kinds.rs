//! From a file's `test` line to the test kind that serves it.

use std::sync::Arc;

use cranelift_reader::TestCommand;

use crate::run::ProgressHook;
use crate::subtest::SubTest;

/// What the runner lends to test kinds: how `test run` executes code.
#[derive(Clone, Default)]
pub struct RunEnv {
    /// Machines for `test run`; `None` skips run tests (reported as skipped).
    pub provider: Option<Arc<dyn crate::run::MachineProvider>>,
    /// Told where the run has got to (test, target, run line).
    pub progress: Option<ProgressHook>,
}

/// Kinds upstream's runner knows that this one does not implement: skipped
/// with a reason, never passed.
pub const UNIMPLEMENTED_KINDS: &[&str] = &["safepoint", "unwind"];

/// The test kind for `command`; `None` for a kind upstream knows but this
/// runner cannot serve (the runner reports it as skipped, never as a pass),
/// or for `run` without machines. A kind upstream does not know is an
/// error, as upstream's.
pub fn new_subtest(
    command: &TestCommand,
    env: &RunEnv,
) -> anyhow::Result<Option<Box<dyn SubTest>>> {
    Ok(match command.command {
        "compile" => Some(crate::compile::subtest(command)?),
        "optimize" => Some(crate::optimize::subtest(command)?),
        "run" => match &env.provider {
            Some(provider) => Some(crate::run::subtest(
                command,
                provider.clone(),
                env.progress.clone(),
            )?),
            None => None,
        },
        "interpret" => Some(crate::interpret::subtest(command)?),
        "verifier" => Some(crate::verifier::KIND.subtest(command)?),
        "inline" => Some(crate::inline::subtest(command)?),
        "alias-analysis" => Some(crate::alias_analysis::KIND.subtest(command)?),
        "domtree" => Some(crate::domtree::KIND.subtest(command)?),
        "cat" => Some(crate::cat::KIND.subtest(command)?),
        "print-cfg" => Some(crate::print_cfg::KIND.subtest(command)?),
        kind if UNIMPLEMENTED_KINDS.contains(&kind) => None,
        kind => anyhow::bail!("unknown test command '{kind}'"),
    })
}
