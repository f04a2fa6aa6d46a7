//! The embedder runtime on every machine: natively on the host, and
//! emulated on aarch64, riscv64, s390x and x86_64. Traps of every kind come
//! back as `Trap` with the right code and function; host functions return
//! values, throw into JIT handlers, throw straight to the entry or panic;
//! entries nest, each level seeing its own outcome; libcalls work.

use cranelift_exn::Module;
use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::{Function, TrapCode};
use cranelift_exn::codegen::isa::OwnedTargetIsa;
use cranelift_exn::codegen::settings::{self, Configurable};
use cranelift_exn::compile::{build_isa, default_isa};
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::Machine;
use cranelift_exn::native::NativeMachine;
use cranelift_exn_emulator::EmulatedMachine;
use cranelift_exn_testkit::hosted::{
    assert_host_function_returns, assert_host_panic_fails_the_call, assert_host_throws,
    assert_jit_throws_to_entry, assert_nested_entries, hosted_builder,
};
use cranelift_exn_testkit::outcome::{one, trap_code};
use cranelift_exn_testkit::traps::TRAPPING;

/// Every machine this test runs on: (label, architecture, native?).
fn machines() -> Vec<(String, Arch, bool)> {
    let mut all = Vec::new();
    if let Some(host) = Arch::host() {
        all.push((format!("{host} native"), host, true));
    }
    for arch in Arch::ALL {
        all.push((format!("{arch} emulated"), arch, false));
    }
    all
}

fn machine(arch: Arch, native: bool) -> Box<dyn Machine> {
    if native {
        Box::new(NativeMachine::new().unwrap())
    } else {
        Box::new(EmulatedMachine::new(arch).unwrap())
    }
}

/// `%user_trap(x)`: user trap 7 when `x` is 0, else user trap 9.
const USER_TRAP: &str = "
function %user_trap(i32) -> i32 {
block0(v0: i32):
    trapz v0, user7
    trapnz v0, user9
    return v0
}
";

/// [`USER_TRAP`] and the testkit's [`TRAPPING`] functions.
fn traps() -> Vec<Function> {
    cranelift_exn::reader::parse_functions(&format!("{USER_TRAP}{TRAPPING}")).unwrap()
}

#[test]
fn traps_of_every_kind_are_delivered_to_the_entry() {
    for (label, arch, native) in machines() {
        let module = Module::new(
            machine(arch, native),
            default_isa(arch).unwrap().as_ref(),
            traps(),
        )
        .unwrap();
        let call = |name: &str, args: &[DataValue]| module.call(name, args);
        assert_eq!(
            trap_code(call("user_trap", &[DataValue::I32(0)]), "%user_trap"),
            TrapCode::user(7).unwrap(),
            "{label}"
        );
        assert_eq!(
            trap_code(call("user_trap", &[DataValue::I32(5)]), "%user_trap"),
            TrapCode::user(9).unwrap(),
            "{label}"
        );
        // The module is still usable after traps.
        assert_eq!(
            call("divide", &[DataValue::I64(42), DataValue::I64(5)]).unwrap(),
            vec![DataValue::I64(8)],
            "{label}"
        );
        assert_eq!(
            trap_code(
                call("divide", &[DataValue::I64(42), DataValue::I64(0)]),
                "%divide"
            ),
            TrapCode::INTEGER_DIVISION_BY_ZERO,
            "{label}"
        );
        assert_eq!(
            trap_code(
                call(
                    "signed_divide",
                    &[DataValue::I64(i64::MIN), DataValue::I64(-1)]
                ),
                "%signed_divide"
            ),
            TrapCode::INTEGER_OVERFLOW,
            "{label}"
        );
        // A guard page: natively a PROT_NONE mapping, emulated an address
        // nothing maps.
        let guard = if native { guard_page() } else { 0x800 };
        assert_eq!(
            trap_code(call("load", &[DataValue::I64(guard as i64)]), "%load"),
            TrapCode::HEAP_OUT_OF_BOUNDS,
            "{label}"
        );
        // Still usable, and the stack is intact.
        assert_eq!(
            call("user_trap", &[DataValue::I32(0)]).unwrap_err(),
            call("user_trap", &[DataValue::I32(0)]).unwrap_err(),
        );
        // Repeated traps of each kind (the emulated x86 CPU used to turn the
        // second `#DE` into a double fault).
        for round in 0..5 {
            assert_eq!(
                trap_code(
                    call("divide", &[DataValue::I64(round), DataValue::I64(0)]),
                    "%divide"
                ),
                TrapCode::INTEGER_DIVISION_BY_ZERO,
                "{label} round {round}"
            );
            assert_eq!(
                trap_code(call("user_trap", &[DataValue::I32(0)]), "%user_trap"),
                TrapCode::user(7).unwrap(),
                "{label} round {round}"
            );
        }
        if !native {
            assert_eq!(
                trap_code(call("recurse", &[DataValue::I64(0)]), "%recurse"),
                TrapCode::STACK_OVERFLOW,
                "{label}"
            );
            assert_eq!(
                call("divide", &[DataValue::I64(9), DataValue::I64(3)]).unwrap(),
                vec![DataValue::I64(3)],
                "{label}"
            );
        }
    }
}

/// A page no access may touch (kept mapped for the rest of the process).
fn guard_page() -> u64 {
    // SAFETY: an anonymous PROT_NONE mapping.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED);
    page as u64
}

#[test]
fn stack_overflow_in_jit_code_is_a_trap_natively() {
    let Some(arch) = Arch::host() else { return };
    // A thread of its own (4 MiB: enough to compile in a debug build); the
    // handler runs on the thread's alternate signal stack.
    let outcome = std::thread::Builder::new()
        .stack_size(4 << 20)
        .spawn(move || {
            let module = Module::new(
                machine(arch, true),
                default_isa(arch).unwrap().as_ref(),
                traps(),
            )
            .unwrap();
            let first = trap_code(module.call("recurse", &[DataValue::I64(0)]), "%recurse");
            let second = trap_code(module.call("recurse", &[DataValue::I64(0)]), "%recurse");
            let after = module
                .call("divide", &[DataValue::I64(10), DataValue::I64(2)])
                .unwrap();
            (first, second, after)
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(outcome.0, TrapCode::STACK_OVERFLOW);
    assert_eq!(outcome.1, TrapCode::STACK_OVERFLOW);
    assert_eq!(outcome.2, vec![DataValue::I64(5)]);
}

fn hosted_module(arch: Arch, native: bool) -> Module {
    hosted_module_for(default_isa(arch).unwrap(), native)
}

/// The testkit's [`hosted`](cranelift_exn_testkit::hosted::hosted) module
/// compiled for `isa`.
fn hosted_module_for(isa: OwnedTargetIsa, native: bool) -> Module {
    let arch = Arch::from_triple(isa.triple()).unwrap();
    hosted_builder(isa).finalize(machine(arch, native)).unwrap()
}

#[test]
fn host_functions_return_throw_and_panic() {
    for (label, arch, native) in machines() {
        let module = hosted_module(arch, native);
        assert_host_function_returns(&module, &label);
        assert_host_throws(&module, &label);
        assert_host_panic_fails_the_call(&module, &label);
    }
}

/// With `bb_padding_log2_minus_one` every block of the user's code is
/// padded to 2 MiB; the entry trampolines and host glue are compiled
/// without it (on aarch64 Cranelift panics on a padded trampoline), and
/// throws, host calls and traps still work.
#[test]
fn padded_blocks_throw_and_trap() {
    for (label, arch, native) in machines() {
        let mut shared = settings::builder();
        shared.set("bb_padding_log2_minus_one", "20").unwrap();
        let isa = build_isa(arch, &settings::Flags::new(shared), &[]).unwrap();
        let module = hosted_module_for(isa, native);
        let call = |name: &str, x: i64| module.call(name, &[DataValue::I64(x)]);
        assert!(module.image().code.len() > 4 << 20, "{label}: not padded");
        assert_eq!(one(call("catch_host", 0)), 1007, "{label}");
        assert_eq!(one(call("catch_host", 1)), 42, "{label}: caught in JIT");
        assert_eq!(one(call("outer", 10)), 3330, "{label}: nested trap");
    }
}

#[test]
fn nested_entries_each_get_their_own_outcome() {
    for (label, arch, native) in machines() {
        assert_nested_entries(&hosted_module(arch, native), &label);
    }
}

#[test]
fn jit_code_throws_straight_to_the_entry() {
    for (label, arch, native) in machines() {
        assert_jit_throws_to_entry(&hosted_module(arch, native), &label);
    }
}

const MIXED: &str = "
function %mix(i8, i16, i32, i64, f32, f64) -> i64, f64, i8, i128 {
block0(v0: i8, v1: i16, v2: i32, v3: i64, v4: f32, v5: f64):
    v6 = sextend.i64 v0
    v7 = sextend.i64 v1
    v8 = sextend.i64 v2
    v9 = iadd v6, v7
    v10 = iadd v9, v8
    v11 = iadd v10, v3
    v12 = fpromote.f64 v4
    v13 = fadd v12, v5
    v14 = ineg v0
    v15 = sextend.i128 v11
    v16 = iconst.i64 1
    v17 = uextend.i128 v16
    v20 = iconst.i64 100
    v18 = ishl v17, v20
    v19 = bor v15, v18
    return v11, v13, v14, v19
}
";

/// Typed handles carry every scalar width in the target's byte order (s390x
/// is big-endian) on every machine.
#[test]
fn typed_handles_on_every_machine() {
    for (label, arch, native) in machines() {
        let mut shared = settings::builder();
        shared.set("enable_llvm_abi_extensions", "true").unwrap();
        shared
            .set("enable_multi_ret_implicit_sret", "true")
            .unwrap();
        let isa = build_isa(arch, &settings::Flags::new(shared), &[]).unwrap();
        let module = Module::new(
            machine(arch, native),
            isa.as_ref(),
            cranelift_exn::reader::parse_functions(MIXED).unwrap(),
        )
        .unwrap();
        let mix = module
            .typed::<(i8, i16, i32, i64, f32, f64), (i64, f64, i8, i128)>("mix")
            .unwrap();
        let (sum, float, negated, wide) = mix.call((-3, 1000, -70000, 1 << 40, 1.5, 0.25)).unwrap();
        assert_eq!(sum, -3 + 1000 - 70000 + (1 << 40), "{label}");
        assert_eq!(float, 1.75, "{label}");
        assert_eq!(negated, 3, "{label}");
        assert_eq!(wide, i128::from(sum) | (1 << 100), "{label}");
        assert!(module.typed::<(i8, i16), i64>("mix").is_err(), "{label}");
    }
}

#[test]
fn libcalls_the_target_lacks_are_host_functions() {
    for (label, arch, native) in machines() {
        let module = hosted_module(arch, native);
        let result = module
            .call(
                "ceil",
                &[
                    DataValue::F32(1.25f32.into()),
                    DataValue::F64((-2.5f64).into()),
                ],
            )
            .unwrap();
        assert_eq!(
            result,
            vec![
                DataValue::F32(2.0f32.into()),
                DataValue::F64((-3.0f64).into())
            ],
            "{label}"
        );
    }
}

#[test]
fn eight_threads_on_emulated_machines_see_only_their_own_outcomes() {
    let threads: Vec<_> = (0..8usize)
        .map(|t| {
            std::thread::spawn(move || {
                let arch = Arch::ALL[t % Arch::ALL.len()];
                let module = hosted_module(arch, false);
                let traps = Module::new(
                    machine(arch, false),
                    default_isa(arch).unwrap().as_ref(),
                    traps(),
                )
                .unwrap();
                for i in 0..50i64 {
                    let x = (t as i64) * 1000 + i;
                    assert_eq!(
                        trap_code(
                            traps.call("divide", &[DataValue::I64(x), DataValue::I64(0)]),
                            "%divide"
                        ),
                        TrapCode::INTEGER_DIVISION_BY_ZERO,
                        "{arch} thread {t}"
                    );
                    assert_eq!(
                        one(traps.call("divide", &[DataValue::I64(x), DataValue::I64(1)])),
                        x
                    );
                    assert_eq!(one(module.call("catch_host", &[DataValue::I64(1)])), 42);
                    assert_eq!(one(module.call("outer", &[DataValue::I64(2)])), 61020);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// JIT code passing host functions every scalar width (decoded on the
/// stack) and ten arguments (decoded into an allocation).
const HOST_ARGUMENTS: &str = "
function %call_few() -> i64 {
    fn0 = %few(i8, i16, i32, i64, f32, f64, i128) -> i64 system_v
block0:
    v0 = iconst.i8 -3
    v1 = iconst.i16 -1000
    v2 = iconst.i32 0x12345678
    v3 = iconst.i64 -0x123456789
    v4 = f32const -0x1.8p0
    v5 = f64const 0x1.4p3
    v6 = iconst.i64 -7
    v7 = sextend.i128 v6
    v8 = call fn0(v0, v1, v2, v3, v4, v5, v7)
    return v8
}

function %call_many() -> i64 {
    fn0 = %many(i64, i64, i64, i64, i64, i64, i64, i64, i64, i32) -> i64 system_v
block0:
    v0 = iconst.i64 1
    v1 = iconst.i64 2
    v2 = iconst.i64 3
    v3 = iconst.i64 4
    v4 = iconst.i64 5
    v5 = iconst.i64 6
    v6 = iconst.i64 7
    v7 = iconst.i64 8
    v8 = iconst.i64 -9
    v9 = iconst.i32 -10
    v10 = call fn0(v0, v1, v2, v3, v4, v5, v6, v7, v8, v9)
    return v10
}
";

/// Host functions receive each argument's type and value in the target's
/// byte order (s390x is big-endian) on every machine, for few arguments and
/// for more than fit on the stack.
#[test]
fn host_functions_receive_every_scalar_width() {
    use cranelift_exn::codegen::ir::{AbiParam, Signature, types};
    use cranelift_exn::codegen::isa::CallConv;
    use std::sync::{Arc, Mutex};

    let sig = |params: &[types::Type]| {
        let mut sig = Signature::new(CallConv::SystemV);
        sig.params = params.iter().map(|&t| AbiParam::new(t)).collect();
        sig.returns = vec![AbiParam::new(types::I64)];
        sig
    };
    let few_types = [
        types::I8,
        types::I16,
        types::I32,
        types::I64,
        types::F32,
        types::F64,
        types::I128,
    ];
    let mut many_types = vec![types::I64; 9];
    many_types.push(types::I32);
    for (label, arch, native) in machines() {
        let mut shared = settings::builder();
        shared.set("enable_llvm_abi_extensions", "true").unwrap();
        let isa = build_isa(arch, &settings::Flags::new(shared), &[]).unwrap();
        let mut builder = cranelift_exn::ModuleBuilder::new(isa);
        builder.define_clif(HOST_ARGUMENTS).unwrap();
        let received: Arc<Mutex<Vec<Vec<DataValue>>>> = Arc::default();
        for (name, types) in [("few", &few_types[..]), ("many", &many_types[..])] {
            let received = received.clone();
            builder
                .define_host_function(name, sig(types), move |_, args| {
                    received.lock().unwrap().push(args.to_vec());
                    Ok(vec![DataValue::I64(args.len() as i64)])
                })
                .unwrap();
        }
        let module = builder.finalize(machine(arch, native)).unwrap();
        assert_eq!(one(module.call("call_few", &[])), 7, "{label}");
        assert_eq!(one(module.call("call_many", &[])), 10, "{label}");
        let received = received.lock().unwrap();
        let expected_few = [
            DataValue::I8(-3),
            DataValue::I16(-1000),
            DataValue::I32(0x1234_5678),
            DataValue::I64(-0x1_2345_6789),
            DataValue::F32((-1.5f32).into()),
            DataValue::F64(10.0f64.into()),
            DataValue::I128(-7),
        ];
        let mut expected_many: Vec<DataValue> = (1..=8).map(DataValue::I64).collect();
        expected_many.push(DataValue::I64(-9));
        expected_many.push(DataValue::I32(-10));
        assert_eq!(
            received[..],
            [expected_few.to_vec(), expected_many],
            "{label}"
        );
    }
}
