//! The README's `cranelift_module::Module` example, compiled and run; a
//! second test checks that the README still shows exactly this code.

use cranelift_exn_testkit::readme::{marked_example, rust_block_after};

#[test]
fn readme_jit_example_runs() -> Result<(), Box<dyn std::error::Error>> {
    // README-BEGIN
    use cranelift_exn::codegen::data_value::DataValue;
    use cranelift_exn::codegen::ir::{AbiParam, InstBuilder, MemFlagsData, types};
    use cranelift_exn::compile::default_isa;
    use cranelift_exn::cranelift_module::{DataDescription, Linkage, Module};
    use cranelift_exn::frontend::{FunctionBuilder, FunctionBuilderContext};
    use cranelift_exn::isa::Arch;
    use cranelift_exn::native::NativeMachine;
    use cranelift_exn::{CallError, JitModule};

    // Instead of `JITModule::new(JITBuilder::with_isa(isa, ...))`:
    let isa = default_isa(Arch::host().ok_or("not a supported host")?)?;
    let mut module = JitModule::with_machine(NativeMachine::new()?, &*isa)?;

    // A global and `fn bump(x) { total += x; return 100 / total; }`.
    let total = module.declare_data("total", Linkage::Export, true, false)?;
    let mut data = DataDescription::new();
    data.define(Box::new(5i64.to_ne_bytes()));
    module.define_data(total, &data)?;
    let mut sig = module.make_signature();
    sig.params.push(AbiParam::new(types::I64));
    sig.returns.push(AbiParam::new(types::I64));
    let bump = module.declare_function("bump", Linkage::Export, &sig)?;
    let mut ctx = module.make_context();
    ctx.func.signature = sig.clone();
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    let x = b.block_params(block)[0];
    let gv = module.declare_data_in_func(total, b.func);
    let addr = b.ins().symbol_value(types::I64, gv);
    let old = b.ins().load(types::I64, MemFlagsData::trusted(), addr, 0);
    let new = b.ins().iadd(old, x);
    b.ins().store(MemFlagsData::trusted(), new, addr, 0);
    let hundred = b.ins().iconst(types::I64, 100);
    let quotient = b.ins().sdiv(hundred, new);
    b.ins().return_(&[quotient]);
    b.seal_all_blocks();
    b.finalize(module.isa().frontend_config());
    module.define_function(bump, &mut ctx)?;
    module.finalize_definitions()?;

    let f = module.typed_function::<i64, i64>(bump)?;
    assert_eq!(f.call(5)?, 10); // total = 10
    match f.call(-10) {
        // total = 0: a real SIGFPE, delivered as this call's outcome
        Err(CallError::Trap { code, function, .. }) => println!("{code} in {function}"), // int_divz in %bump
        other => panic!("{other:?}"),
    }
    // Later definitions load into new memory; old code stays where it is.
    module.define_clif(
        "function %bump_twice(i64) -> i64 system_v {
             fn0 = %bump(i64) -> i64 system_v
         block0(v0: i64):
             v1 = call fn0(v0)
             v2 = call fn0(v0)
             v3 = iadd v1, v2
             return v3
         }",
    )?;
    module.finalize_definitions()?;
    assert_eq!(
        module.call("bump_twice", &[DataValue::I64(25)])?,
        [DataValue::I64(6)]
    ); // 100/25 + 100/50
    // README-END
    Ok(())
}

#[test]
fn readme_shows_the_tested_jit_example() {
    let readme = include_str!("../README.md");
    assert_eq!(
        rust_block_after(readme, "## Library: the embedder runtime"),
        marked_example(include_str!("readme_jit_example.rs"))
    );
}
