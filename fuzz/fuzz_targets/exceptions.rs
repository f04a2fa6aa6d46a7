//! Fuzz target: the fuzzer's bytes become an exception program (the same
//! generator as `clif-exn fuzz`), which runs natively on the host and in the
//! emulator on one ISA picked by the first byte; every outcome must equal the
//! oracle's.
//!
//! ```text
//! cargo install cargo-fuzz
//! cargo +nightly fuzz run exceptions     # or RUSTC_BOOTSTRAP=1 cargo fuzz run exceptions
//! ```

#![no_main]

use arbitrary::Unstructured;
use cranelift_exn::compile::default_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::native::NativeMachine;
use cranelift_exn_emulator::EmulatedMachine;
use cranelift_exn_fuzzgen::{clif, harness, program};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(program) = program::generate(&mut Unstructured::new(rest)) else {
        return;
    };
    let emulated = Arch::ALL[usize::from(pick) % Arch::ALL.len()];
    let mut runs: Vec<(String, Arch, Box<dyn cranelift_exn::machine::Machine>)> = Vec::new();
    if let Some(host) = Arch::host() {
        runs.push((
            format!("{host} native"),
            host,
            Box::new(NativeMachine::new().expect("native machine")),
        ));
    }
    runs.push((
        format!("{emulated} emulated"),
        emulated,
        Box::new(EmulatedMachine::new(emulated).expect("emulated machine")),
    ));
    for (label, arch, machine) in runs {
        let isa = default_isa(arch).expect("default ISA");
        if let Err(mismatch) = harness::check(&program, &label, isa.as_ref(), machine) {
            panic!("{mismatch}\n{}", clif::print(&program));
        }
    }
});
