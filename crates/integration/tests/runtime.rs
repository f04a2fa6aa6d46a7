//! The embedder runtime on every machine: natively on the host, and
//! emulated on aarch64, riscv64, s390x and x86_64. Traps of every kind come
//! back as `Trap` with the right code and function; host functions return
//! values, throw into JIT handlers, throw straight to the entry or panic;
//! entries nest, each level seeing its own outcome; libcalls work.

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::{AbiParam, Signature, TrapCode, types};
use cranelift_exn::codegen::isa::{CallConv, OwnedTargetIsa};
use cranelift_exn::codegen::settings::{self, Configurable};
use cranelift_exn::compile::{build_isa, default_isa};
use cranelift_exn::host::HostThrow;
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::Machine;
use cranelift_exn::native::NativeMachine;
use cranelift_exn::{CallError, Module, ModuleBuilder};
use cranelift_exn_emulator::EmulatedMachine;

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

const TRAPS: &str = "
function %user_trap(i32) -> i32 {
block0(v0: i32):
    trapz v0, user7
    trapnz v0, user9
    return v0
}

function %divide(i64, i64) -> i64 {
block0(v0: i64, v1: i64):
    v2 = udiv v0, v1
    return v2
}

function %signed_divide(i64, i64) -> i64 {
block0(v0: i64, v1: i64):
    v2 = sdiv v0, v1
    return v2
}

function %load(i64) -> i32 {
block0(v0: i64):
    v1 = load.i32 heap_oob v0
    return v1
}

function %recurse(i64) -> i64 {
    fn0 = %recurse(i64) -> i64
block0(v0: i64):
    v901 = iconst.i64 1
    v1 = iadd v0, v901
    v2 = call fn0(v1)
    v3 = iadd v2, v0
    return v3
}
";

fn trap_code(result: Result<Vec<DataValue>, CallError>, function: &str) -> TrapCode {
    match result {
        Err(CallError::Trap {
            code, function: f, ..
        }) => {
            assert_eq!(f, function, "trap reported in the wrong function");
            code
        }
        other => panic!("expected a trap in {function}, got {other:?}"),
    }
}

#[test]
fn traps_of_every_kind_are_delivered_to_the_entry() {
    for (label, arch, native) in machines() {
        let module = Module::new(
            machine(arch, native),
            default_isa(arch).unwrap().as_ref(),
            cranelift_exn::reader::parse_functions(TRAPS).unwrap(),
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
                cranelift_exn::reader::parse_functions(TRAPS).unwrap(),
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

const HOSTED: &str = "
function %add_host(i64, i64) -> i64 {
    fn0 = %host_add(i64, i64) -> i64 system_v
block0(v0: i64, v1: i64):
    v2 = call fn0(v0, v1)
    v902 = iconst.i64 1
    v3 = iadd v2, v902
    return v3
}

;; Catches tag 5 from the host; anything else passes through.
function %catch_host(i64) -> i64 {
    sig0 = (i64) -> i64 tail
    fn0 = %middle(i64) -> i64 tail
block0(v0: i64):
    try_call fn0(v0), sig0, block1(ret0), [ tag5: block2(exn0, exn1) ]
block1(v1: i64):
    return v1
block2(v2: i64, v3: i64):
    v4 = iadd v2, v3
    return v4
}

function %middle(i64) -> i64 tail {
    fn0 = %host_throw(i64) -> i64 tail
block0(v0: i64):
    v1 = call fn0(v0)
    v903 = iconst.i64 1000
    v2 = iadd v1, v903
    return v2
}

;; Calls back into the host, which re-enters the module.
function %outer(i64) -> i64 {
    fn0 = %host_reenter(i64) -> i64 system_v
block0(v0: i64):
    v1 = call fn0(v0)
    v904 = iconst.i64 10
    v2 = imul v1, v904
    return v2
}

function %inner(i64) -> i64 {
    fn0 = %host_throw(i64) -> i64 tail
block0(v0: i64):
    v1 = call fn0(v0)
    return v1
}

function %inner_trap(i64) -> i64 {
block0(v0: i64):
    trap user3
}

;; Throws tag 7 to the entry from below handlers that would catch it.
function %to_entry(i64) -> i64 {
    sig0 = (i64) -> i64 tail
    fn0 = %to_entry_inner(i64) -> i64 tail
block0(v0: i64):
    try_call fn0(v0), sig0, block1(ret0), [ tag7: block2(exn0), default: block2(exn0) ]
block1(v1: i64):
    return v1
block2(v2: i64):
    v3 = iconst.i64 -1
    return v3
}

function %to_entry_inner(i64) -> i64 tail {
    fn0 = %__cranelift_exn_throw_to_entry(i32, i64, i64) system_v
block0(v0: i64):
    v1 = iconst.i32 7
    v2 = iconst.i64 99
    call fn0(v1, v0, v2)
    return v0
}

function %ceil(f32, f64) -> f32, f64 {
block0(v0: f32, v1: f64):
    v2 = ceil v0
    v3 = floor v1
    return v2, v3
}
";

fn i64_sig(params: usize, call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params = vec![AbiParam::new(types::I64); params];
    sig.returns = vec![AbiParam::new(types::I64)];
    sig
}

fn hosted_module(arch: Arch, native: bool) -> Module {
    hosted_module_for(default_isa(arch).unwrap(), native)
}

/// [`HOSTED`] and its host functions compiled for `isa`.
fn hosted_module_for(isa: OwnedTargetIsa, native: bool) -> Module {
    let arch = Arch::from_triple(isa.triple()).unwrap();
    let mut builder = ModuleBuilder::new(isa);
    builder.define_clif(HOSTED).unwrap();
    builder
        .define_host_function(
            "host_add",
            i64_sig(2, CallConv::SystemV),
            |_, args| match args {
                [DataValue::I64(a), DataValue::I64(b)] => Ok(vec![DataValue::I64(a * 100 + b)]),
                _ => panic!("bad arguments {args:?}"),
            },
        )
        .unwrap();
    // x: 0 returns 7; 1 throws tag 5 (caught by %catch_host); 2 throws
    // tag 6 (uncaught); 3 throws to the entry; 4 panics.
    builder
        .define_host_function("host_throw", i64_sig(1, CallConv::Tail), |_, args| {
            let [DataValue::I64(x)] = args else {
                panic!("bad arguments {args:?}")
            };
            match x {
                0 => Ok(vec![DataValue::I64(7)]),
                1 => Err(HostThrow::Exception {
                    tag: 5,
                    payloads: [40, 2],
                }),
                2 => Err(HostThrow::Exception {
                    tag: 6,
                    payloads: [0x66, 0x77],
                }),
                3 => Err(HostThrow::ToEntry {
                    tag: 5,
                    payloads: [1, 2],
                }),
                _ => panic!("host function asked to panic"),
            }
        })
        .unwrap();
    // Re-enters the module: x < 10 calls %inner(x), else %inner_trap; the
    // inner outcome becomes a number.
    builder
        .define_host_function("host_reenter", i64_sig(1, CallConv::SystemV), |m, args| {
            let [DataValue::I64(x)] = args else {
                panic!("bad arguments {args:?}")
            };
            let inner = if *x < 10 {
                m.call("inner", &[DataValue::I64(*x)])
            } else if *x < 20 {
                m.call("inner_trap", &[DataValue::I64(*x)])
            } else {
                m.call("to_entry", &[DataValue::I64(*x)])
            };
            let value = match inner {
                Ok(v) => match v[..] {
                    [DataValue::I64(v)] => v,
                    _ => -1,
                },
                Err(CallError::Exception { tag, payloads }) => {
                    i64::from(tag) * 1000 + payloads[0] as i64
                }
                Err(CallError::Trap { code, .. }) if code == TrapCode::user(3).unwrap() => 333,
                Err(other) => panic!("unexpected inner outcome {other:?}"),
            };
            Ok(vec![DataValue::I64(value)])
        })
        .unwrap();
    builder.finalize(machine(arch, native)).unwrap()
}

fn one(result: Result<Vec<DataValue>, CallError>) -> i64 {
    match result.as_deref() {
        Ok([DataValue::I64(v)]) => *v,
        other => panic!("expected one i64, got {other:?}"),
    }
}

#[test]
fn host_functions_return_throw_and_panic() {
    for (label, arch, native) in machines() {
        let module = hosted_module(arch, native);
        let call = |name: &str, x: i64| module.call(name, &[DataValue::I64(x)]);
        assert_eq!(
            one(module.call("add_host", &[DataValue::I64(3), DataValue::I64(4)])),
            305,
            "{label}"
        );
        assert_eq!(one(call("catch_host", 0)), 1007, "{label}");
        assert_eq!(one(call("catch_host", 1)), 42, "{label}: caught in JIT");
        assert_eq!(
            call("catch_host", 2).unwrap_err(),
            CallError::Exception {
                tag: 6,
                payloads: [0x66, 0x77]
            },
            "{label}: uncaught"
        );
        // Straight to the entry, past the tag-5 handler that would catch it.
        assert_eq!(
            call("catch_host", 3).unwrap_err(),
            CallError::Exception {
                tag: 5,
                payloads: [1, 2]
            },
            "{label}: to entry"
        );
        match call("catch_host", 4) {
            Err(CallError::Failed(e)) => {
                assert!(e.to_string().contains("asked to panic"), "{label}: {e}")
            }
            other => panic!("{label}: a panicking host function gave {other:?}"),
        }
        assert_eq!(one(call("catch_host", 1)), 42, "{label}: usable afterwards");
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
        let module = hosted_module(arch, native);
        let call = |x: i64| one(module.call("outer", &[DataValue::I64(x)]));
        // Inner returns 7 → 70.
        assert_eq!(call(0), 70, "{label}");
        // Inner's uncaught tag-6 exception stops at the inner entry.
        assert_eq!(call(2), (6 * 1000 + 0x66) * 10, "{label}");
        // Inner's throw-to-entry reaches the inner entry, not the outer.
        assert_eq!(call(3), (5 * 1000 + 1) * 10, "{label}");
        // An inner trap is the inner call's outcome.
        assert_eq!(call(10), 3330, "{label}");
        assert_eq!(call(1), (5 * 1000 + 40) * 10, "{label}");
    }
}

#[test]
fn jit_code_throws_straight_to_the_entry() {
    for (label, arch, native) in machines() {
        let module = hosted_module(arch, native);
        for x in [0, 5, -3] {
            assert_eq!(
                module.call("to_entry", &[DataValue::I64(x)]).unwrap_err(),
                CallError::Exception {
                    tag: 7,
                    payloads: [x as u64, 99]
                },
                "{label}: the tag-7 handler in between is skipped"
            );
        }
        // Nested: the inner entry gets it, the outer call goes on.
        assert_eq!(
            one(module.call("outer", &[DataValue::I64(21)])),
            (7 * 1000 + 21) * 10,
            "{label}"
        );
        assert_eq!(
            one(module.call("catch_host", &[DataValue::I64(1)])),
            42,
            "{label}: usable afterwards"
        );
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
                    cranelift_exn::reader::parse_functions(TRAPS).unwrap(),
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
