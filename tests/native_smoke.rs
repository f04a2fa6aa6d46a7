use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::compile::default_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::native::NativeMachine;
use cranelift_exn::{CallError, Module};

fn module(text: &str) -> Module {
    let funcs = cranelift_exn::reader::parse_functions(text).unwrap();
    let isa = default_isa(Arch::host().expect("a supported host")).unwrap();
    Module::new(Box::new(NativeMachine::new().unwrap()), isa.as_ref(), funcs).unwrap()
}

/// The functions of Cranelift's `filetests/runtests/throw.clif` (same
/// licence as this crate), whose run line expects `%entry() == 58`.
const UPSTREAM_THROW: &str = r#"
function %entry() -> i64 tail {
  fn0 = %main(i64) -> i64 tail

block0:
  v1 = get_frame_pointer.i64
  v2 = call fn0(v1)
  return v2
}


function %main(i64) -> i64 tail {
  sig0 = (i64, i32, i64, i64) tail
  fn0 = %throw(i64, i32, i64, i64) tail

block0(v0: i64):
  v1 = iconst.i64 42
  v2 = iconst.i64 100
  v3 = iconst.i32 1
  try_call fn0(v0, v3, v1, v2), sig0, block1(), [ tag1: block2(exn0, exn1) ]

block1:
  v4 = iconst.i64 1
  return v4

block2(v5: i64, v6: i64):
  v7 = isub.i64 v6, v5
  return v7
}


function %throw(i64, i32, i64, i64) tail {
  sig0 = (i64, i64, i64, i32, i64, i64)
  fn0 = %__cranelift_throw(i64, i64, i64, i32, i64, i64)

block0(v0: i64, v1: i32, v2: i64, v3: i64):
  v4 = get_frame_pointer.i64
  v5 = get_return_address.i64
  v6 = load.i64 v5 ; get caller's FP
  v7 = func_addr.i64 fn0
  call_indirect sig0, v7(v0, v4, v6, v1, v2, v3)
  return
}
"#;

#[test]
fn upstream_throw_shape_is_caught() {
    let m = module(UPSTREAM_THROW);
    assert_eq!(m.call("%entry", &[]).unwrap(), vec![DataValue::I64(58)]);
}

#[test]
fn uncaught_reaches_entry() {
    let m = module(
        "function %thrower(i64) -> i64 {
            sig0 = (i64, i64, i64, i32, i64, i64)
            fn0 = %__cranelift_throw(i64, i64, i64, i32, i64, i64)
        block0(v0: i64):
            v1 = get_frame_pointer.i64
            v2 = iconst.i32 7
            v3 = iconst.i64 11
            v4 = iconst.i64 22
            call fn0(v1, v1, v1, v2, v3, v4)
            return v0
        }",
    );
    assert_eq!(
        m.call("%thrower", &[DataValue::I64(5)]),
        Err(CallError::Exception {
            tag: 7,
            payloads: [11, 22]
        })
    );
}
