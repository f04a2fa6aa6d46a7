//! Embedder safety on the four emulated ISAs: stack overflows of any frame
//! size are `stk_ovf` traps, calls can be interrupted from another thread,
//! and code is installed once and never writable by the program.

use std::sync::mpsc;
use std::time::Duration;

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::{Signature, TrapCode};
use cranelift_exn::codegen::isa::CallConv;
use cranelift_exn::codegen::settings;
use cranelift_exn::compile::{build_isa, default_isa};
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::Machine;
use cranelift_exn::memory::Memory;
use cranelift_exn::{CallError, Module, ModuleBuilder};
use cranelift_exn_emulator::EmulatedMachine;
use cranelift_exn_testkit::interrupts::SPIN;
use cranelift_exn_testkit::traps::{SCRIBBLE, deep_recursion};

fn functions(clif: &str) -> Vec<cranelift_exn::codegen::ir::Function> {
    cranelift_exn::reader::parse_functions(clif).unwrap_or_else(|e| panic!("{e}\n{clif}"))
}

fn assert_stack_overflow(outcome: Result<Vec<DataValue>, CallError>, what: &str) {
    match outcome {
        Err(CallError::Trap { code, function, .. }) => {
            assert_eq!(code, TrapCode::STACK_OVERFLOW, "{what}");
            assert_eq!(function, "%deep", "{what}");
        }
        other => panic!("{what}: expected a stk_ovf trap, got {other:?}"),
    }
}

#[test]
fn frames_of_64k_and_1m_overflow_into_the_guard_page_on_every_isa() {
    for arch in Arch::ALL {
        for slot in [64 << 10, 1 << 20] {
            let module = Module::new(
                Box::new(EmulatedMachine::new(arch).unwrap()),
                default_isa(arch).unwrap().as_ref(),
                functions(&deep_recursion(slot)),
            )
            .unwrap();
            let what = format!("{arch}, {slot}-byte frames");
            assert_stack_overflow(module.call("deep", &[DataValue::I64(0)]), &what);
            // The machine is usable afterwards.
            assert_stack_overflow(module.call("deep", &[DataValue::I64(0)]), &what);
        }
    }
}

#[test]
fn a_module_adds_probes_to_an_isa_without_them() {
    for arch in Arch::ALL {
        for slot in [64 << 10, 1 << 20] {
            let isa = build_isa(arch, &settings::Flags::new(settings::builder()), &[]).unwrap();
            let module = Module::new(
                Box::new(EmulatedMachine::new(arch).unwrap()),
                isa.as_ref(),
                functions(&deep_recursion(slot)),
            )
            .unwrap();
            assert_stack_overflow(
                module.call("deep", &[DataValue::I64(0)]),
                &format!("{arch}, {slot}-byte frames, an ISA built without probes"),
            );
        }
    }
}

#[test]
fn a_loop_without_calls_is_interrupted_from_another_thread_on_every_isa() {
    let threads: Vec<_> = Arch::ALL
        .into_iter()
        .map(|arch| {
            std::thread::spawn(move || {
                let (started_tx, started) = mpsc::channel();
                let (handle_tx, handle_rx) = mpsc::channel();
                let (outcome_tx, outcomes) = mpsc::channel();
                let runner = std::thread::spawn(move || {
                    let mut builder = ModuleBuilder::new(default_isa(arch).unwrap());
                    builder.define_clif(SPIN).unwrap();
                    builder
                        .define_host_function(
                            "started",
                            Signature::new(CallConv::SystemV),
                            move |_, _| {
                                let _ = started_tx.send(());
                                Ok(vec![])
                            },
                        )
                        .unwrap();
                    let mut machine = EmulatedMachine::new(arch).unwrap();
                    // Only an interrupt can end the loop.
                    machine.set_instruction_limit(None);
                    let module = builder.finalize(Box::new(machine)).unwrap();
                    handle_tx.send(module.interrupt_handle()).unwrap();
                    for name in ["spin", "answer", "spin", "answer"] {
                        outcome_tx.send(module.call(name, &[])).unwrap();
                    }
                });
                let handle = handle_rx.recv().unwrap();
                let patience = Duration::from_secs(60);
                for _ in 0..2 {
                    started.recv_timeout(patience).unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                    handle.interrupt();
                    let outcome = outcomes.recv_timeout(patience).expect("the call ended");
                    assert_eq!(outcome, Err(CallError::Interrupted), "{arch}");
                    let outcome = outcomes.recv_timeout(patience).expect("the call ended");
                    assert_eq!(outcome, Ok(vec![DataValue::I64(42)]), "{arch}");
                }
                runner.join().unwrap();
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn jit_code_cannot_write_its_own_code_on_every_isa() {
    for arch in Arch::ALL {
        let module = Module::new(
            Box::new(EmulatedMachine::new(arch).unwrap()),
            default_isa(arch).unwrap().as_ref(),
            functions(SCRIBBLE),
        )
        .unwrap();
        let outcome = module.call("scribble", &[]);
        assert!(
            matches!(outcome, Err(CallError::Trap { .. })),
            "{arch}: the store into code did not fault: {outcome:?}"
        );
    }
}

#[test]
fn code_is_installed_once_at_its_address_on_every_isa() {
    for arch in Arch::ALL {
        let mut m = EmulatedMachine::new(arch).unwrap();
        let a = m.allocate_code(64).unwrap();
        let code = [0x5a; 32];
        assert!(m.install_code(a + 16, &code).is_err(), "{arch}: inside");
        assert!(m.install_code(0x1000, &code).is_err(), "{arch}: stray");
        assert!(m.install_code(a, &[0; 65]).is_err(), "{arch}: too long");
        m.install_code(a, &code).unwrap();
        let error = m.install_code(a, &[0; 32]).unwrap_err().to_string();
        assert!(error.contains("already installed"), "{arch}: {error}");
        let mut back = [0; 32];
        m.memory().read(a, &mut back).unwrap();
        assert_eq!(back, code, "{arch}");
    }
}
