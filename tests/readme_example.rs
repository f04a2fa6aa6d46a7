//! The README's library example, compiled and run; a second test checks
//! that the README still shows exactly this code.

use cranelift_exn_testkit::readme::{marked_example, rust_block_after};

#[test]
fn readme_example_runs() -> Result<(), Box<dyn std::error::Error>> {
    // README-BEGIN
    use cranelift_exn::codegen::data_value::DataValue;
    use cranelift_exn::codegen::ir::{AbiParam, Signature, types};
    use cranelift_exn::codegen::isa::CallConv;
    use cranelift_exn::compile::default_isa;
    use cranelift_exn::isa::Arch;
    use cranelift_exn::native::NativeMachine;
    use cranelift_exn::{CallError, HostThrow, ModuleBuilder};

    let arch = Arch::host().ok_or("not a supported host")?; // the machine this runs on
    let mut builder = ModuleBuilder::new(default_isa(arch)?);
    builder.define_clif(
        "function %safe_div(i64, i64) -> i64 {
             sig0 = (i64, i64) -> i64 tail
             fn0 = %checked_div(i64, i64) -> i64 tail
         block0(v0: i64, v1: i64):
             try_call fn0(v0, v1), sig0, block1(ret0), [ tag1: block2(exn0, exn1) ]
         block1(v2: i64):
             return v2
         block2(v3: i64, v4: i64):      ; tag 1 caught: return the payload
             return v3
         }
         function %checked_div(i64, i64) -> i64 tail {
             fn0 = %complain(i64) -> i64 tail
         block0(v0: i64, v1: i64):
             brif v1, block1, block2
         block1:
             v2 = sdiv v0, v1
             return v2
         block2:
             v3 = call fn0(v0)          ; the host throws; this frame is unwound
             return v3
         }
         function %crash(i64) -> i64 {
         block0(v0: i64):
             v1 = iconst.i64 0
             v2 = udiv v0, v1           ; no check: a hardware trap, delivered
             return v2
         }",
    )?;
    let mut sig = Signature::new(CallConv::Tail);
    sig.params.push(AbiParam::new(types::I64));
    sig.returns.push(AbiParam::new(types::I64));
    builder.define_host_function("complain", sig, |_module, args| match args {
        [DataValue::I64(x)] => Err(HostThrow::Exception {
            tag: 1,
            payloads: [(-x) as u64, 0],
        }),
        _ => unreachable!(),
    })?;
    let module = builder.finalize(Box::new(NativeMachine::new()?))?;

    let safe_div = module.typed::<(i64, i64), i64>("safe_div")?;
    assert_eq!(safe_div.call((84, 2))?, 42);
    assert_eq!(safe_div.call((5, 0))?, -5); // thrown by the host, caught in JIT code
    match module.call("crash", &[DataValue::I64(1)]) {
        Err(CallError::Trap { code, function, .. }) => println!("{code} in {function}"), // int_divz in %crash
        other => panic!("{other:?}"),
    }
    // README-END
    Ok(())
}

#[test]
fn readme_shows_the_tested_example() {
    let readme = include_str!("../README.md");
    assert_eq!(
        rust_block_after(readme, "### CLIF text and host functions: `ModuleBuilder`"),
        marked_example(include_str!("readme_example.rs"))
    );
}
