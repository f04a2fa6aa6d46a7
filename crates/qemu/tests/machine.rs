//! `QemuMachine` on all four architectures: Cranelift code compiled with
//! the library and run in `qemu-<arch>` through its GDB stub — values,
//! exceptions caught across frames and uncaught, traps, host functions,
//! nested entries, read-only data, and instructions unicorn lacks.

use std::time::Instant;

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::TrapCode;
use cranelift_exn::compile::default_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::Machine;
use cranelift_exn::memory::Memory;
use cranelift_exn::{CallError, Module};
use cranelift_exn_qemu::QemuMachine;
use cranelift_exn_testkit::hosted::{
    assert_host_function_returns, assert_host_panic_fails_the_call, assert_host_throws,
    assert_jit_throws_to_entry, assert_nested_entries, hosted_builder, jit_throws,
};
use cranelift_exn_testkit::interrupts::COUNT_UP;
use cranelift_exn_testkit::outcome::{one, trap_code};
use cranelift_exn_testkit::traps::TRAPPING;

fn machine(arch: Arch) -> Box<QemuMachine> {
    assert!(
        QemuMachine::is_installed(arch),
        "qemu-{arch} is not on PATH: install qemu-user (scripts/dev does)"
    );
    Box::new(QemuMachine::new(arch).unwrap_or_else(|e| panic!("{e}")))
}

const VALUES: &str = "
function %add(i64, i64) -> i64 {
block0(v0: i64, v1: i64):
    v2 = iadd v0, v1
    return v2
}

function %mix(i32, f64, i8) -> f64, i64 {
block0(v0: i32, v1: f64, v2: i8):
    v3 = fcvt_from_sint.f64 v0
    v4 = fmul v3, v1
    v5 = sextend.i64 v2
    v7 = iconst.i64 3
    v6 = imul v5, v7
    return v4, v6
}

function %fib(i64) -> i64 {
    fn0 = %fib(i64) -> i64
block0(v0: i64):
    v9 = iconst.i64 2
    v1 = icmp ult v0, v9
    brif v1, block1, block2
block1:
    return v0
block2:
    v7 = iconst.i64 -1
    v2 = iadd v0, v7
    v3 = call fn0(v2)
    v8 = iconst.i64 -2
    v4 = iadd v0, v8
    v5 = call fn0(v4)
    v6 = iadd v3, v5
    return v6
}
";

/// A module of the functions of `clif` compiled for `arch`, on `machine`.
fn module_of(machine: Box<QemuMachine>, arch: Arch, clif: &str) -> Module {
    let functions = cranelift_exn::reader::parse_functions(clif).unwrap();
    Module::new(machine, default_isa(arch).unwrap().as_ref(), functions).unwrap()
}

#[test]
fn plain_values_on_every_arch() {
    for arch in Arch::ALL {
        let module = module_of(machine(arch), arch, VALUES);
        assert_eq!(
            one(module.call("add", &[DataValue::I64(40), DataValue::I64(2)])),
            42,
            "{arch}"
        );
        assert_eq!(
            one(module.call("add", &[DataValue::I64(-5), DataValue::I64(i64::MIN)])),
            i64::MIN.wrapping_sub(5),
            "{arch}"
        );
        assert_eq!(
            module
                .call(
                    "mix",
                    &[
                        DataValue::I32(-7),
                        DataValue::F64(1.5.into()),
                        DataValue::I8(-100)
                    ]
                )
                .unwrap(),
            vec![DataValue::F64((-10.5).into()), DataValue::I64(-300)],
            "{arch}"
        );
        assert_eq!(
            one(module.call("fib", &[DataValue::I64(15)])),
            610,
            "{arch}"
        );
    }
}

/// `%user_trap(x)`: user trap 1 when `x` is 0, else `x`.
const USER_TRAP: &str = "
function %user_trap(i32) -> i32 {
block0(v0: i32):
    trapz v0, user1
    return v0
}
";

#[test]
fn traps_are_delivered_to_the_entry() {
    for arch in Arch::ALL {
        let module = module_of(machine(arch), arch, &format!("{USER_TRAP}{TRAPPING}"));
        let call = |name: &str, args: &[DataValue]| module.call(name, args);
        for round in 0..3 {
            assert_eq!(
                trap_code(call("user_trap", &[DataValue::I32(0)]), "%user_trap"),
                TrapCode::user(1).unwrap(),
                "{arch} round {round}"
            );
            assert_eq!(
                trap_code(
                    call("divide", &[DataValue::I64(42 + round), DataValue::I64(0)]),
                    "%divide"
                ),
                TrapCode::INTEGER_DIVISION_BY_ZERO,
                "{arch} round {round}"
            );
        }
        assert_eq!(
            call("user_trap", &[DataValue::I32(5)]).unwrap(),
            vec![DataValue::I32(5)],
            "{arch}"
        );
        assert_eq!(
            one(call("divide", &[DataValue::I64(42), DataValue::I64(5)])),
            8,
            "{arch}"
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
            "{arch}"
        );
        // Nothing is mapped below the stub page.
        assert_eq!(
            trap_code(call("load", &[DataValue::I64(0x800)]), "%load"),
            TrapCode::HEAP_OUT_OF_BOUNDS,
            "{arch}"
        );
        assert_eq!(
            trap_code(call("recurse", &[DataValue::I64(0)]), "%recurse"),
            TrapCode::STACK_OVERFLOW,
            "{arch}"
        );
        assert_eq!(
            one(call("divide", &[DataValue::I64(9), DataValue::I64(3)])),
            3,
            "{arch}: usable after the traps"
        );
    }
}

/// The testkit's hosted module with its JIT throws, on QEMU.
fn hosted_module(arch: Arch) -> Module {
    let mut builder = hosted_builder(default_isa(arch).unwrap());
    builder.define_clif(&jit_throws()).unwrap();
    builder.finalize(machine(arch)).unwrap()
}

#[test]
fn exceptions_caught_across_frames_and_uncaught() {
    for arch in Arch::ALL {
        let module = hosted_module(arch);
        let call = |name: &str, x: i64| module.call(name, &[DataValue::I64(x)]);
        // Thrown by JIT code two frames below its handler.
        assert_eq!(one(call("catch_jit", 0)), 8, "{arch}: no throw");
        assert_eq!(one(call("catch_jit", 58)), 42, "{arch}: caught in JIT");
        // Thrown by the host.
        assert_host_throws(&module, &arch);
        assert_eq!(one(call("catch_jit", 60)), 40, "{arch}: usable afterwards");
    }
}

#[test]
fn host_functions_return_values_and_panics_fail_the_call() {
    for arch in Arch::ALL {
        let module = hosted_module(arch);
        assert_host_function_returns(&module, &arch);
        assert_host_panic_fails_the_call(&module, &arch);
    }
}

#[test]
fn jit_code_throws_straight_to_the_entry() {
    for arch in Arch::ALL {
        assert_jit_throws_to_entry(&hosted_module(arch), &arch);
    }
}

#[test]
fn nested_entries_each_get_their_own_outcome() {
    for arch in Arch::ALL {
        assert_nested_entries(&hosted_module(arch), &arch);
    }
}

const DATA: &str = "
function %load(i64) -> i64 {
block0(v0: i64):
    v1 = load.i64 heap_oob v0
    return v1
}

function %store(i64, i64) -> i64 {
block0(v0: i64, v1: i64):
    store.i64 heap_oob v1, v0
    v2 = load.i64 heap_oob v0
    return v2
}
";

/// Data memory in the target's byte order; a read-only object (protected
/// by an `mprotect` the image's stub runs) faults on a store, a writable
/// one does not.
#[test]
fn data_objects_read_only_and_writable() {
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let ro = m.allocate_data(8, 8).unwrap();
        let rw = m.allocate_data(100, 16).unwrap();
        assert_eq!(rw % 16, 0);
        assert!(rw >= ro + 8, "{arch}: regions overlap");
        let word = arch.endianness().write_u64(0x0102_0304_0506_0708);
        m.install_data(ro, &word, false).unwrap();
        m.install_data(rw, &[0xee; 100], true).unwrap();
        // The machine's memory reads words in the target's byte order.
        assert_eq!(m.memory().read_u64(ro).unwrap(), 0x0102_0304_0506_0708);
        let mut first = [0u8];
        m.memory().read(ro, &mut first).unwrap();
        assert_eq!(
            first[0],
            if arch == Arch::S390x { 1 } else { 8 },
            "{arch}: byte order"
        );
        // Outside allocated data: refused.
        assert!(m.install_data(rw + 0x10_0000, &[1], true).is_err());
        let module = module_of(m, arch, DATA);
        let call = |name: &str, args: &[i64]| {
            let args: Vec<DataValue> = args.iter().map(|&a| DataValue::I64(a)).collect();
            module.call(name, &args)
        };
        assert_eq!(
            one(call("load", &[ro as i64])),
            0x0102_0304_0506_0708,
            "{arch}"
        );
        assert_eq!(
            one(call("load", &[rw as i64])),
            0xeeee_eeee_eeee_eeeeu64 as i64,
            "{arch}"
        );
        assert_eq!(one(call("store", &[rw as i64 + 8, -5])), -5, "{arch}");
        assert_eq!(
            trap_code(call("store", &[ro as i64, 1]), "%store"),
            TrapCode::HEAP_OUT_OF_BOUNDS,
            "{arch}: store to read-only data"
        );
        assert_eq!(
            one(call("load", &[ro as i64])),
            0x0102_0304_0506_0708,
            "{arch}"
        );
    }
}

/// Memory access through the stub is checked: unmapped addresses are
/// errors, the stub page is read-only.
#[test]
fn memory_errors_are_errors() {
    for arch in Arch::ALL {
        let mut m = machine(arch);
        let mut buf = [0u8; 16];
        assert!(m.memory().read(0x800, &mut buf).is_err(), "{arch}");
        assert!(m.memory().write(0x800, &buf).is_err(), "{arch}");
        let slot = m
            .host_function_address(cranelift_exn::machine::HostFunction::Call)
            .unwrap();
        assert!(
            m.memory().write(slot, &[0; 4]).is_err(),
            "{arch}: stub page"
        );
        // Code memory: a large install round-trips (several packets).
        let code: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let base = m.allocate_code(code.len()).unwrap();
        // SAFETY: nothing here runs the installed bytes.
        unsafe { m.install_code(base, &code) }.unwrap();
        let mut back = vec![0; code.len()];
        m.memory().read(base, &mut back).unwrap();
        assert_eq!(back, code, "{arch}");
        // Installed once, at an allocated region, then read-execute.
        assert!(
            unsafe { m.install_code(base, &code) }.is_err(),
            "{arch}: twice"
        );
        assert!(
            unsafe { m.install_code(base + 0x1000_0000, &code) }.is_err(),
            "{arch}: not allocated"
        );
        let small = m.allocate_code(16).unwrap();
        assert_eq!(small % 0x1000, 0, "{arch}: page-aligned region");
        assert!(
            unsafe { m.install_code(small, &[0; 32]) }.is_err(),
            "{arch}: too big"
        );
        assert!(
            m.memory().write(base, &[0; 4]).is_err(),
            "{arch}: code is read-execute"
        );
    }
}

/// How long a call takes: entry, one host-function round trip (two stops),
/// and a trap, averaged; printed for the report (`--nocapture`).
#[test]
fn round_trip_times() {
    for arch in Arch::ALL {
        let module = hosted_module(arch);
        let call = |name: &str, x: i64| module.call(name, &[DataValue::I64(x)]);
        assert_eq!(one(call("catch_jit", 0)), 8);
        let time = |name: &str, args: &[DataValue], expected: i64| {
            let rounds = 20;
            let start = Instant::now();
            for _ in 0..rounds {
                assert_eq!(one(module.call(name, args)), expected, "{arch} {name}");
            }
            start.elapsed() / rounds
        };
        let plain = time("catch_jit", &[DataValue::I64(0)], 8);
        let host = time("add_host", &[DataValue::I64(3), DataValue::I64(4)], 305);
        let throw = time("catch_host", &[DataValue::I64(1)], 42);
        println!(
            "{arch}: call {plain:?}, call with a host function {host:?}, host throw caught in JIT {throw:?}"
        );
    }
}

/// A runaway loop is interrupted after the machine's timeout; the call
/// fails and the machine stays usable.
#[test]
fn timeout_interrupts_a_runaway_loop() {
    let clif = &format!(
        "{COUNT_UP}
function %add(i64, i64) -> i64 {{
block0(v0: i64, v1: i64):
    v2 = iadd v0, v1
    return v2
}}
"
    );
    for arch in Arch::ALL {
        let mut m = machine(arch);
        m.set_timeout(Some(std::time::Duration::from_millis(200)));
        assert_eq!(m.timeout(), Some(std::time::Duration::from_millis(200)));
        let module = module_of(m, arch, clif);
        let start = Instant::now();
        match module.call("count_up", &[DataValue::I64(0)]) {
            Err(CallError::Failed(e)) => {
                assert!(e.to_string().contains("timed out"), "{arch}: {e}")
            }
            other => panic!("{arch}: a runaway loop gave {other:?}"),
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(
            one(module.call("add", &[DataValue::I64(2), DataValue::I64(3)])),
            5,
            "{arch}: usable after the timeout"
        );
    }
}
