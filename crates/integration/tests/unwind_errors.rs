//! A throw over a corrupted frame chain ends the call with an error on every
//! ISA — delivered straight to the entry trampoline — instead of hanging or
//! crashing, and the module stays usable.

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::compile::default_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::Machine;
use cranelift_exn::native::NativeMachine;
use cranelift_exn::{CallError, Error, Module};
use cranelift_exn_emulator::EmulatedMachine;

fn machine(arch: Arch) -> Box<dyn Machine> {
    if Some(arch) == Arch::host() {
        Box::new(NativeMachine::new().unwrap())
    } else {
        Box::new(EmulatedMachine::new(arch).unwrap())
    }
}

/// `%corrupt` overwrites the link to its caller's frame (`[fp]` on every ISA
/// here; on s390x the back chain) with 1, then throws.
const TEXT: &str = "
function %corrupt(i64) -> i64 {
    fn0 = %__cranelift_throw(i64, i64, i64, i32, i64, i64)
block0(v0: i64):
    v1 = get_frame_pointer.i64
    v2 = iconst.i64 1
    store notrap aligned v2, v1
    v3 = iconst.i32 5
    v4 = iconst.i64 0
    call fn0(v4, v1, v1, v3, v0, v0)
    return v0
}

function %fine(i64) -> i64 {
block0(v0: i64):
    return v0
}
";

#[test]
fn corrupted_frame_chain_is_an_error_not_a_crash() {
    for arch in Arch::ALL {
        let isa = default_isa(arch).unwrap();
        let funcs = cranelift_exn::reader::parse_functions(TEXT).unwrap();
        let m = Module::new(machine(arch), isa.as_ref(), funcs).unwrap();
        match m.call("%corrupt", &[DataValue::I64(3)]) {
            Err(CallError::Failed(Error::Unwind(message))) => {
                assert!(message.contains("frame chain"), "{arch}: {message}")
            }
            other => panic!("{arch}: {other:?}"),
        }
        assert_eq!(
            m.call("%fine", &[DataValue::I64(7)]).unwrap(),
            vec![DataValue::I64(7)],
            "{arch}: the module still works"
        );
    }
}
