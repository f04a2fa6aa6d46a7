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

/// A whole filetest of the project's (handler selection by tag across
/// frames), loaded as functions and called directly.
#[test]
fn throws_across_frames_are_caught_by_tag() {
    let text = include_str!("../filetests/runtests/throw_tags.clif");
    let m = module(text);
    for (tag, expected) in [(1, 1011), (2, 2022), (3, 1033), (4, 4044), (0, 4000)] {
        assert_eq!(
            m.call("%entry", &[DataValue::I32(tag)]).unwrap(),
            vec![DataValue::I64(expected)],
            "tag {tag}"
        );
    }
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
