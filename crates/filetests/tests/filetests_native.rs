//! The repository's run filetests, executed natively for the host's target
//! lines; the other targets run in the emulator (see the clif-exn crate),
//! so here they must be reported as skipped, never as passed.

use std::path::Path;
use std::sync::Arc;

use cranelift_codegen::isa::TargetIsa;
use cranelift_exn::Error;
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::{Machine, MachineKind};
use cranelift_exn::native::NativeMachine;
use cranelift_exn_filetests::kinds::RunEnv;
use cranelift_exn_filetests::run::MachineProvider;
use cranelift_exn_filetests::runner::{collect_files, run_files};
use cranelift_exn_filetests::runone::Status;

struct HostOnly;

impl MachineProvider for HostOnly {
    fn kind(&self, _: Arch) -> MachineKind {
        MachineKind::Native
    }

    fn machine(&self, arch: Arch, _: MachineKind) -> Result<Box<dyn Machine>, Error> {
        if Some(arch) == Arch::host() {
            Ok(Box::new(NativeMachine::new()?))
        } else {
            Err(Error::Machine(format!("{arch} is not the host")))
        }
    }

    fn unsupported(&self, isa: &dyn TargetIsa) -> Option<String> {
        match Arch::from_triple(isa.triple()) {
            Some(arch) if Some(arch) == Arch::host() => None,
            _ => Some("not the host".into()),
        }
    }
}

#[test]
fn filetests_pass_on_the_host_and_other_targets_are_skipped() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../filetests");
    let files = collect_files(&root).unwrap();
    let env = RunEnv {
        provider: Some(Arc::new(HostOnly)),
        progress: None,
    };
    let mut executed = 0;
    let mut skipped_targets = 0;
    let mut failures = Vec::new();
    for report in run_files(&files, &env, 2) {
        if let Some(e) = &report.file_error {
            failures.push(e.clone());
        }
        for result in &report.results {
            if let Status::Failed(message) = &result.status {
                failures.push(format!("{}: {message}", report.path.display()));
            }
            if let Some(run) = &result.run {
                if run.skipped.is_some() {
                    skipped_targets += 1;
                    assert_eq!(run.passed, 0);
                } else {
                    executed += run.passed + run.failures.len();
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(executed > 20, "only {executed} run lines executed");
    assert!(skipped_targets > 0, "no target was skipped");
}
