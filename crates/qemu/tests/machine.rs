//! `QemuMachine` on all four architectures: Cranelift code compiled with
//! the library and run in `qemu-<arch>` through its GDB stub — values,
//! exceptions caught across frames and uncaught, traps, host functions,
//! nested entries, read-only data, and instructions unicorn lacks.

use std::time::Instant;

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::{AbiParam, Signature, TrapCode, types};
use cranelift_exn::codegen::isa::CallConv;
use cranelift_exn::compile::default_isa;
use cranelift_exn::host::HostThrow;
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::Machine;
use cranelift_exn::{CallError, Module, ModuleBuilder};
use cranelift_exn_qemu::QemuMachine;

fn machine(arch: Arch) -> Box<QemuMachine> {
    Box::new(QemuMachine::new(arch).unwrap_or_else(|e| panic!("{e}")))
}

fn one(result: Result<Vec<DataValue>, CallError>) -> i64 {
    match result.as_deref() {
        Ok([DataValue::I64(v)]) => *v,
        other => panic!("expected one i64, got {other:?}"),
    }
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

#[test]
fn plain_values_on_every_arch() {
    for arch in Arch::ALL {
        let module = Module::new(
            machine(arch),
            default_isa(arch).unwrap().as_ref(),
            cranelift_exn::reader::parse_functions(VALUES).unwrap(),
        )
        .unwrap();
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
        assert_eq!(one(module.call("fib", &[DataValue::I64(15)])), 610, "{arch}");
    }
}
