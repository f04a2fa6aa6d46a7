//! The repository's run filetests, executed natively for the host's target
//! lines (the other targets run in the emulator; see the clif-exn crate).

use std::path::Path;

use cranelift_exn::Error;
use cranelift_exn::filetest::{MachineProvider, collect_files, run_file};
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::Machine;
use cranelift_exn::native::NativeMachine;

struct HostOnly;

impl MachineProvider for HostOnly {
    fn machine(&self, arch: Arch) -> Result<Box<dyn Machine>, Error> {
        if Some(arch) == Arch::host() {
            Ok(Box::new(NativeMachine::new()?))
        } else {
            Err(Error::Machine(format!("{arch} is not the host")))
        }
    }

    fn mode(&self, _: Arch) -> &'static str {
        "native"
    }
}

#[test]
fn filetests_pass_on_the_host() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("filetests");
    let mut executed = 0;
    let mut failures = Vec::new();
    for file in collect_files(&root).unwrap() {
        let report = run_file(&file, &HostOnly);
        if let Some(f) = &report.file_failure {
            failures.push(format!("{}:{} {f}", file.display(), f.line));
        }
        for t in report.targets.iter().filter(|t| t.arch == Arch::host()) {
            executed += t.passed + t.failures.len();
            for f in &t.failures {
                failures.push(format!("{}:{} {f}", file.display(), f.line));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(executed > 20, "only {executed} run lines executed");
}
