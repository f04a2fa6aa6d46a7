//! From a file's `test` line to the test kind that serves it.

use std::sync::Arc;

use cranelift_reader::TestCommand;

use crate::subtest::SubTest;

/// What the runner lends to test kinds: how `test run` executes code.
#[derive(Clone, Default)]
pub struct RunEnv {
    /// Machines for `test run`; `None` skips run tests (reported as skipped).
    pub provider: Option<Arc<dyn crate::run::MachineProvider>>,
}

/// The test kind for `command`, or `None` for a kind this runner cannot serve
/// (the runner reports it as skipped, never as a pass).
pub fn new_subtest(
    command: &TestCommand,
    env: &RunEnv,
) -> anyhow::Result<Option<Box<dyn SubTest>>> {
    Ok(match command.command {
        "compile" => Some(crate::compile::subtest(command)?),
        "optimize" => Some(crate::optimize::subtest(command)?),
        "run" => match &env.provider {
            Some(provider) => Some(crate::run::subtest(command, provider.clone())?),
            None => None,
        },
        "interpret" => Some(crate::interpret::subtest(command)?),
        "verifier" => Some(crate::verifier::subtest(command)?),
        "inline" => Some(crate::inline::subtest(command)?),
        "alias-analysis" => Some(crate::alias_analysis::subtest(command)?),
        "domtree" => Some(crate::domtree::subtest(command)?),
        "cat" => Some(crate::cat::subtest(command)?),
        "print-cfg" => Some(crate::print_cfg::subtest(command)?),
        _ => None,
    })
}
