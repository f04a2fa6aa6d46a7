//! `JitModule` through `cranelift_module::Module`, natively: incremental
//! definitions, data objects, native symbols, threads, cross-module calls,
//! signature checks and reserved symbols.

use std::sync::Arc;

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::{self, AbiParam, InstBuilder, TrapCode, types};
use cranelift_exn::compile::default_isa;
use cranelift_exn::cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module as _};
use cranelift_exn::isa::Arch;
use cranelift_exn::native::NativeMachine;
use cranelift_exn::{CallError, JitModule};
use cranelift_exn_testkit::backtrace::{
    RECURSE, assert_capped_recursion, assert_chain_trap, chain,
};
use cranelift_exn_testkit::codegen::forwarding;
use cranelift_exn_testkit::data::DataObjects;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

fn jit() -> JitModule<NativeMachine> {
    let isa = default_isa(Arch::host().expect("a supported host")).unwrap();
    JitModule::with_machine(NativeMachine::new().unwrap(), isa.as_ref()).unwrap()
}

/// Declare each of `names` with `linkage` and `signature`.
fn declare_all<const N: usize>(
    m: &mut JitModule<NativeMachine>,
    linkage: Linkage,
    signature: &ir::Signature,
    names: [&str; N],
) -> [FuncId; N] {
    names.map(|name| m.declare_function(name, linkage, signature).unwrap())
}

fn sig(m: &JitModule<NativeMachine>, params: usize) -> ir::Signature {
    let mut s = m.make_signature();
    s.params
        .extend((0..params).map(|_| AbiParam::new(types::I64)));
    s.returns.push(AbiParam::new(types::I64));
    s
}

/// Define `id` with a body built by `body(builder, module-imported refs, params)`.
fn define(
    m: &mut JitModule<NativeMachine>,
    id: cranelift_exn::cranelift_module::FuncId,
    body: impl FnOnce(&mut FunctionBuilder, &mut JitModule<NativeMachine>, &[ir::Value]) -> ir::Value,
) {
    let mut ctx = m.make_context();
    ctx.func.signature = m.declarations().get_function_decl(id).signature.clone();
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
    let block = b.create_block();
    b.append_block_params_for_function_params(block);
    b.switch_to_block(block);
    b.seal_block(block);
    let params = b.block_params(block).to_vec();
    let v = body(&mut b, m, &params);
    b.ins().return_(&[v]);
    let config = m.isa().frontend_config();
    b.finalize(config);
    m.define_function(id, &mut ctx).unwrap();
}

/// The address of data object `id` in the function being built.
fn data_address(
    b: &mut FunctionBuilder,
    m: &mut JitModule<NativeMachine>,
    id: DataId,
) -> ir::Value {
    let gv = m.declare_data_in_func(id, b.func);
    b.ins().symbol_value(types::I64, gv)
}

/// A trusted `i64` load from `addr + offset`.
fn load_i64(b: &mut FunctionBuilder, addr: ir::Value, offset: i32) -> ir::Value {
    b.ins()
        .load(types::I64, ir::MemFlagsData::trusted(), addr, offset)
}

fn call1(m: &JitModule<NativeMachine>, name: &str, x: i64) -> Result<i64, CallError> {
    match m.call(name, &[DataValue::I64(x)])?[..] {
        [DataValue::I64(v)] => Ok(v),
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn incremental_definitions_call_old_and_new_code_and_resolve_later_definitions() {
    let mut m = jit();
    let s1 = sig(&m, 1);
    let double = m.declare_function("double", Linkage::Export, &s1).unwrap();
    let later = m.declare_function("later", Linkage::Local, &s1).unwrap();
    let uses_later = m
        .declare_function("uses_later", Linkage::Export, &s1)
        .unwrap();
    define(&mut m, double, |b, _, p| b.ins().iadd(p[0], p[0]));
    define(&mut m, uses_later, |b, m, p| {
        let f = m.declare_func_in_func(later, b.func);
        let call = b.ins().call(f, &[p[0]]);
        b.inst_results(call)[0]
    });
    m.finalize_definitions().unwrap();
    assert_eq!(call1(&m, "double", 21), Ok(42));
    let old_double = m.get_finalized_function(double).unwrap();
    // `uses_later` waits for `later`.
    assert!(m.get_finalized_function(uses_later).is_err());
    assert_eq!(
        m.waiting(),
        vec![("%uses_later".to_string(), "%later".to_string())]
    );
    assert!(m.call("uses_later", &[DataValue::I64(1)]).is_err());

    // Second round: `later` calls old code; `uses_later` loads now.
    define(&mut m, later, |b, m, p| {
        let f = m.declare_func_in_func(double, b.func);
        let call = b.ins().call(f, &[p[0]]);
        let r = b.inst_results(call)[0];
        {
            let one = b.ins().iconst(types::I64, 1);
            b.ins().iadd(r, one)
        }
    });
    m.finalize_definitions().unwrap();
    assert_eq!(call1(&m, "uses_later", 10), Ok(21));
    assert_eq!(call1(&m, "later", 5), Ok(11));
    assert_eq!(m.get_finalized_function(double).unwrap(), old_double);
    assert_eq!(m.images().len(), 2);
    assert!(m.waiting().is_empty());
    let typed = m.typed_function::<i64, i64>(uses_later).unwrap();
    assert_eq!(typed.call(100).unwrap(), 201);
}

#[test]
fn module_errors_for_bad_declarations_and_definitions() {
    let mut m = jit();
    let s1 = sig(&m, 1);
    let s2 = sig(&m, 2);
    let f = m.declare_function("f", Linkage::Export, &s1).unwrap();
    assert!(m.declare_function("f", Linkage::Export, &s2).is_err());
    m.declare_data("f", Linkage::Export, false, false)
        .expect_err("a function's name as data");
    define(&mut m, f, |b, _, p| p[0].min(b.ins().iconst(types::I64, 0)));
    let mut ctx = m.make_context();
    ctx.func.signature = s1.clone();
    assert!(m.define_function(f, &mut ctx).is_err(), "defined twice");
    let imp = m.declare_function("imp", Linkage::Import, &s1).unwrap();
    let mut ctx = m.make_context();
    ctx.func.signature = s1.clone();
    assert!(matches!(
        m.define_function(imp, &mut ctx),
        Err(cranelift_exn::cranelift_module::ModuleError::InvalidImportDefinition(_))
    ));
    // An import nothing provides is an error at finalize naming it.
    let uses = m
        .declare_function("uses_imp", Linkage::Export, &s1)
        .unwrap();
    define(&mut m, uses, |b, m, p| {
        let r = m.declare_func_in_func(imp, b.func);
        let call = b.ins().call(r, &[p[0]]);
        b.inst_results(call)[0]
    });
    let err = m.finalize_definitions().unwrap_err().to_string();
    assert!(err.contains("undefined symbol %imp"), "{err}");
    // Thread-local data is refused clearly.
    let err = m
        .declare_data("tls", Linkage::Export, true, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("thread-local"), "{err}");
    // Reserved symbols cannot be defined, but the throw stub can be imported.
    assert!(
        m.declare_function("__cranelift_throw", Linkage::Export, &s1)
            .is_err()
    );
    assert!(
        m.declare_function("__cranelift_exn_entry_0", Linkage::Local, &s1)
            .is_err()
    );
}

#[test]
fn data_objects_writable_read_only_zeroed_aligned_with_relocations() {
    let mut m = jit();
    let s0 = sig(&m, 0);
    let s1 = sig(&m, 1);
    let data = DataObjects::declare(&mut m, Linkage::Local);
    let DataObjects {
        counter,
        table,
        zeros,
        ptrs,
    } = data;
    let target = m.declare_function("target", Linkage::Local, &s1).unwrap();
    let exported = ["bump", "read_table", "via_ptrs"];
    let [bump, read_table, via_ptrs] = declare_all(&mut m, Linkage::Export, &s1, exported);
    let poke_ro = m.declare_function("poke_ro", Linkage::Export, &s0).unwrap();

    let mut d = DataDescription::new();
    d.define(7u64.to_ne_bytes().to_vec().into_boxed_slice());
    m.define_data(counter, &d).unwrap();
    let mut d = DataDescription::new();
    let bytes: Vec<u8> = [10u64, 20, 30, 40]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    d.define(bytes.into_boxed_slice());
    d.set_align(256);
    m.define_data(table, &d).unwrap();
    let mut d = DataDescription::new();
    d.define_zeroinit(4096 * 3);
    d.set_align(64);
    m.define_data(zeros, &d).unwrap();
    data.define_ptrs(&mut m, target);

    define(&mut m, target, |b, _, p| {
        let three = b.ins().iconst(types::I64, 3);
        b.ins().imul(p[0], three)
    });
    define(&mut m, bump, |b, m, p| {
        let addr = data_address(b, m, counter);
        let old = load_i64(b, addr, 0);
        let new = b.ins().iadd(old, p[0]);
        b.ins().store(ir::MemFlagsData::trusted(), new, addr, 0);
        new
    });
    define(&mut m, read_table, |b, m, p| {
        let addr = data_address(b, m, table);
        let eight = b.ins().iconst(types::I64, 8);
        let off = b.ins().imul(p[0], eight);
        let at = b.ins().iadd(addr, off);
        load_i64(b, at, 0)
    });
    define(&mut m, via_ptrs, |b, m, p| {
        let addr = data_address(b, m, ptrs);
        let fptr = load_i64(b, addr, 0);
        let dptr = load_i64(b, addr, 8);
        let sref = b.import_signature(s1.clone());
        let call = b.ins().call_indirect(sref, fptr, &[p[0]]);
        let r = b.inst_results(call)[0];
        let t = load_i64(b, dptr, 0);
        b.ins().iadd(r, t)
    });
    define(&mut m, poke_ro, |b, m, _| {
        let addr = data_address(b, m, table);
        let v = b.ins().iconst(types::I64, 99);
        b.ins().store(
            ir::MemFlagsData::new().with_trap_code(Some(TrapCode::HEAP_OUT_OF_BOUNDS)),
            v,
            addr,
            0,
        );
        v
    });
    m.finalize_definitions().unwrap();

    assert_eq!(call1(&m, "bump", 5), Ok(12));
    assert_eq!(call1(&m, "bump", 5), Ok(17));
    let (addr, size) = m.get_finalized_data(counter).unwrap();
    assert_eq!(size, 8);
    // SAFETY: a live, loaded 8-byte data object.
    assert_eq!(unsafe { (addr as *const u64).read() }, 17);
    for i in 0..4 {
        assert_eq!(call1(&m, "read_table", i), Ok(10 * (i + 1)));
    }
    let (table_addr, _) = m.get_finalized_data(table).unwrap();
    assert_eq!(table_addr % 256, 0);
    let (zeros_addr, zsize) = m.get_finalized_data(zeros).unwrap();
    assert_eq!((zeros_addr % 64, zsize), (0, 4096 * 3));
    // SAFETY: a live, loaded data object of `zsize` bytes.
    let z = unsafe { std::slice::from_raw_parts(zeros_addr as *const u8, zsize) };
    assert!(z.iter().all(|&b| b == 0));
    // 4 * 3 + table[2]
    assert_eq!(call1(&m, "via_ptrs", 4), Ok(12 + 30));
    let (ptrs_addr, _) = m.get_finalized_data(ptrs).unwrap();
    // SAFETY: a live 16-byte data object.
    let words = unsafe { std::slice::from_raw_parts(ptrs_addr as *const u64, 2) };
    assert_eq!(
        words,
        [m.get_finalized_function(target).unwrap(), table_addr + 16]
    );
    // A store to read-only data is a trap with the faulting address.
    match m.call("poke_ro", &[]) {
        Err(CallError::Trap {
            code,
            function,
            address,
            ..
        }) => {
            assert_eq!(code, TrapCode::HEAP_OUT_OF_BOUNDS);
            assert_eq!(function, "%poke_ro");
            assert_eq!(address, Some(table_addr));
            let debug = format!("{:?}", m.call("poke_ro", &[]).unwrap_err());
            assert!(debug.contains("heap_oob"), "{debug}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(call1(&m, "read_table", 0), Ok(10), "still intact");
}

extern "C" fn native_triple(x: i64) -> i64 {
    x * 3
}

#[test]
fn native_symbols_are_called_directly_and_host_functions_may_throw() {
    let mut m = jit();
    let s1 = sig(&m, 1);
    m.define_native_symbol(
        "triple",
        native_triple as *const () as u64,
        Some(s1.clone()),
    )
    .unwrap();
    m.add_symbol_lookup(|name| (name == "looked_up").then_some(native_triple as *const () as u64));
    m.define_host_function("host_check", s1.clone(), |_, args| match args {
        [DataValue::I64(x)] if *x >= 0 => Ok(vec![DataValue::I64(*x + 1000)]),
        _ => Err(cranelift_exn::HostThrow::Exception {
            tag: 3,
            payloads: [9, 9],
        }),
    })
    .unwrap();
    let imported = ["triple", "looked_up", "host_check"];
    let [triple, looked, check] = declare_all(&mut m, Linkage::Import, &s1, imported);
    let f = m.declare_function("f", Linkage::Export, &s1).unwrap();
    define(&mut m, f, |b, m, p| {
        let t = m.declare_func_in_func(triple, b.func);
        let l = m.declare_func_in_func(looked, b.func);
        let c = m.declare_func_in_func(check, b.func);
        let c1 = b.ins().call(t, &[p[0]]);
        let a = b.inst_results(c1)[0];
        let c2 = b.ins().call(l, &[a]);
        let a = b.inst_results(c2)[0];
        let c3 = b.ins().call(c, &[a]);
        b.inst_results(c3)[0]
    });
    m.finalize_definitions().unwrap();
    assert_eq!(call1(&m, "f", 2), Ok(1018));
    assert_eq!(
        call1(&m, "f", -1),
        Err(CallError::Exception {
            tag: 3,
            payloads: [9, 9]
        })
    );
}

#[test]
fn signature_mismatches_are_errors_naming_both_signatures() {
    // A host function registered with one signature, declared in CLIF with
    // another.
    let mut m = jit();
    let s1 = sig(&m, 1);
    m.define_host_function("h", s1, |_, _| Ok(vec![DataValue::I64(0)]))
        .unwrap();
    m.define_clif(
        "function %f(i64) -> i64 {
            fn0 = %h(i64, i64) -> i64 tail
        block0(v0: i64):
            v1 = call fn0(v0, v0)
            return v1
        }",
    )
    .unwrap();
    let err = m.finalize().unwrap_err().to_string();
    assert!(
        err.contains("%f calls %h as (i64, i64) -> i64 tail")
            && err.contains("but %h is (i64) -> i64 system_v"),
        "{err}"
    );
    assert!(m.call("f", &[DataValue::I64(1)]).is_err());

    // A host function returning i64 declared as returning f64.
    let mut m = jit();
    let s1 = sig(&m, 1);
    m.define_host_function("h", s1, |_, _| Ok(vec![DataValue::I64(0)]))
        .unwrap();
    m.define_clif(&forwarding("f", "h", "(i64) -> f64 system_v"))
        .unwrap();
    let err = m.finalize().unwrap_err().to_string();
    assert!(
        err.contains("%f calls %h as (i64) -> f64 system_v, but %h is (i64) -> i64 system_v"),
        "{err}"
    );

    // A returns mismatch and a CLIF→CLIF call-convention mismatch.
    for (callee, decl) in [
        (
            "function %g(i64) -> i64 {\nblock0(v0: i64):\n return v0\n}",
            "%g(i64) -> f64",
        ),
        (
            "function %g(i64) -> i64 tail {\nblock0(v0: i64):\n return v0\n}",
            "%g(i64) -> i64 system_v",
        ),
    ] {
        let mut m = jit();
        m.define_clif(callee).unwrap();
        m.define_clif(&format!(
            "function %caller(i64) -> i64 {{
                fn0 = {decl}
            block0(v0: i64):
                v1 = call fn0(v0)
                v2 = iconst.i64 0
                return v2
            }}"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let err = m.finalize().unwrap_err().to_string();
        assert!(
            err.contains("%caller calls %g as") && err.contains("but %g is"),
            "{err}"
        );
    }

    // User-defined reserved symbols are refused: the throw stub, the host
    // dispatcher, trampolines; also through ModuleBuilder.
    for name in [
        "%__cranelift_throw",
        "%__cranelift_exn_throw_to_entry",
        "%__cranelift_exn_host_call",
        "%__cranelift_exn_entry_0",
    ] {
        let text = format!("function {name}() {{\nblock0:\n return\n}}");
        let err = jit().define_clif(&text).unwrap_err().to_string();
        assert!(err.contains("reserved") && err.contains(name), "{err}");
        let mut b = cranelift_exn::ModuleBuilder::new(
            default_isa(Arch::host().expect("a supported host")).unwrap(),
        );
        let err = b.define_clif(&text).unwrap_err().to_string();
        assert!(err.contains("reserved"), "{err}");
        let err = b
            .define_host_function(
                name,
                ir::Signature::new(cranelift_exn::codegen::isa::CallConv::SystemV),
                |_, _| Ok(vec![]),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("reserved"), "{err}");
    }
}

const THROWER: &str = "
function %lib_div(i64, i64) -> i64 {
block0(v0: i64, v1: i64):
    v2 = sdiv v0, v1
    return v2
}

function %lib_throw(i64) -> i64 tail {
    sig0 = (i64, i64, i64, i32, i64, i64) system_v
    fn0 = %__cranelift_throw sig0
block0(v0: i64):
    v1 = get_frame_pointer.i64
    v2 = get_return_address.i64
    v3 = iconst.i64 0
    v4 = iconst.i32 5
    call fn0(v3, v1, v2, v4, v0, v0)
    return v0
}
";

#[test]
fn cross_module_calls_with_traps_and_throws_reaching_the_caller() {
    let mut lib = jit();
    lib.define_clif(THROWER).unwrap();
    lib.finalize().unwrap();
    let lib = Arc::new(lib);
    let mut app = jit();
    app.import_module(&lib).unwrap();
    app.define_clif(
        "function %app(i64, i64) -> i64 {
            fn0 = %lib_div(i64, i64) -> i64
            sig1 = (i64) -> i64 tail
            fn1 = %lib_throw(i64) -> i64 tail
        block0(v0: i64, v1: i64):
            brif v1, block1, block2
        block1:
            v2 = call fn0(v0, v1)
            return v2
        block2:
            try_call fn1(v0), sig1, block3(ret0), [ tag5: block4(exn0), default: block5 ]
        block3(v3: i64):
            return v3
        block4(v4: i64):
            v7 = iconst.i64 1000
            v5 = iadd v4, v7
            return v5
        block5:
            v6 = iconst.i64 -1
            return v6
        }",
    )
    .unwrap();
    app.finalize().unwrap();
    let two = |a: i64, b: i64| app.call("app", &[DataValue::I64(a), DataValue::I64(b)]);
    assert_eq!(two(42, 6), Ok(vec![DataValue::I64(7)]));
    // The throw in the other module's code is caught by this module's handler.
    assert_eq!(two(7, 0), Ok(vec![DataValue::I64(1007)]));
    // The trap in the other module's code reaches this module's entry.
    let mut app2 = jit();
    app2.import_module(&lib).unwrap();
    app2.define_clif(
        "function %divz(i64) -> i64 {
            fn0 = %lib_div(i64, i64) -> i64
        block0(v0: i64):
            v1 = iconst.i64 0
            v2 = call fn0(v0, v1)
            return v2
        }",
    )
    .unwrap();
    app2.finalize().unwrap();
    match app2.call("divz", &[DataValue::I64(1)]) {
        Err(CallError::Trap { code, function, .. }) => {
            assert_eq!(code, TrapCode::INTEGER_DIVISION_BY_ZERO);
            assert_eq!(function, "%lib_div");
        }
        other => panic!("{other:?}"),
    }
    // A throw in the other module's code that nothing catches reaches this
    // module's entry.
    let mut app3 = jit();
    app3.import_module(&lib).unwrap();
    app3.define_clif(&forwarding("pass", "lib_throw", "(i64) -> i64 tail"))
        .unwrap();
    app3.finalize().unwrap();
    assert_eq!(
        app3.call("pass", &[DataValue::I64(3)]),
        Err(CallError::Exception {
            tag: 5,
            payloads: [3, 3]
        })
    );
    // Its functions are not this module's: calls by name are refused.
    assert!(
        app3.call("lib_div", &[DataValue::I64(1), DataValue::I64(1)])
            .is_err()
    );
    drop(lib);
    // The imported module stays alive with its importers.
    assert_eq!(two(42, 7), Ok(vec![DataValue::I64(6)]));
}

#[test]
fn a_failed_finalize_loads_nothing_and_the_module_stays_usable() {
    let mut m = jit();
    m.define_clif("function %ok(i64) -> i64 {\nblock0(v0: i64):\n return v0\n}")
        .unwrap();
    m.finalize().unwrap();
    m.define_clif(&forwarding("bad", "nowhere", "(i64) -> i64"))
        .unwrap();
    let err = m.finalize().unwrap_err().to_string();
    assert!(
        err.contains("undefined symbol %nowhere") && err.contains("%bad"),
        "{err}"
    );
    assert_eq!(call1(&m, "ok", 4), Ok(4));
    assert!(m.call("bad", &[DataValue::I64(1)]).is_err());
    // Defining the missing symbol makes the next finalize load both.
    m.define_clif("function %nowhere(i64) -> i64 {\nblock0(v0: i64):\n v1 = iconst.i64 9\n v2 = iadd v0, v1\n return v2\n}")
        .unwrap();
    m.finalize().unwrap();
    assert_eq!(call1(&m, "bad", 1), Ok(10));
}

#[test]
fn one_native_module_is_shared_by_threads_calling_it_concurrently() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JitModule<NativeMachine>>();
    let mut m = jit();
    m.define_clif(
        "function %work(i64) -> i64 {
        block0(v0: i64):
            v1 = iconst.i64 0
            v2 = icmp slt v0, v1
            trapnz v2, user7
            v4 = iconst.i64 3
            v3 = imul v0, v4
            return v3
        }",
    )
    .unwrap();
    m.define_clif(THROWER).unwrap();
    m.finalize().unwrap();
    let m = Arc::new(m);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                let work = m.typed::<i64, i64>("work").unwrap();
                for i in 0..2000i64 {
                    let x = i * 4 + t;
                    match i % 3 {
                        0 => assert_eq!(work.call(x).unwrap(), 3 * x),
                        1 => match work.call(-x - 1) {
                            Err(CallError::Trap { code, .. }) => {
                                assert_eq!(code, TrapCode::user(7).unwrap())
                            }
                            other => panic!("{other:?}"),
                        },
                        _ => assert_eq!(
                            m.call("lib_throw", &[DataValue::I64(x)]),
                            Err(CallError::Exception {
                                tag: 5,
                                payloads: [x as u64; 2]
                            })
                        ),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn traps_carry_a_backtrace_and_print_codes_by_name() {
    let mut m = jit();
    m.define_clif(&chain()).unwrap();
    m.define_clif(RECURSE).unwrap();
    m.finalize().unwrap();
    assert_eq!(call1(&m, "outer", 5), Ok(8));
    let err = m.call("outer", &[DataValue::I64(0)]).unwrap_err();
    assert_chain_trap(&m, &err, &"native");
    let debug = format!("{err:?}");
    assert!(
        debug.contains("user9") && debug.contains("%middle+0x"),
        "{debug}"
    );

    // A stack overflow: `stk_ovf` by name, and the backtrace is capped.
    let handle = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || m.call("recurse", &[DataValue::I64(0)]))
        .unwrap();
    let err = handle.join().unwrap().unwrap_err();
    let debug = format!("{err:?}");
    assert!(
        debug.contains("stk_ovf") && !debug.contains("TrapCode("),
        "{debug}"
    );
    assert_capped_recursion(&err, &"native");
}

/// CLIF naming entity numbers the reader would make billions of entities
/// for is an error at its line, before the reader runs out of memory (it
/// aborts the process); the module stays usable.
#[test]
fn huge_entity_numbers_in_clif_are_errors_not_aborts() {
    let mut m = jit();
    for (text, line, word) in [
        (
            "function %f() -> i64 {\nblock2147483647:\n    v0 = iconst.i64 1\n    return v0\n}",
            2,
            "block2147483647",
        ),
        (
            "function %f() -> i64 {\nblock0:\n    v4000000000 = iconst.i64 1\n    return v4000000000\n}",
            3,
            "v4000000000",
        ),
    ] {
        let err = m.define_clif(text).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("line {line}: {word}: ")) && err.contains("not supported"),
            "{err}"
        );
    }
    m.define_clif("function %f() -> i64 {\nblock0:\n    v0 = iconst.i64 7\n    return v0\n}")
        .unwrap();
    m.finalize().unwrap();
    assert_eq!(m.call("f", &[]), Ok(vec![DataValue::I64(7)]));
}

/// The code of a module finalized a function at a time lies in ascending
/// order (each region after the last: the exception table appends), and
/// handlers keep being found across every finalize: `%f{i}` `try_call`s
/// `%f{i - 1}` with a handler for tag `i` only, so an exception thrown
/// from the innermost with tag `k` is caught `k` levels up, however many
/// functions (and call sites) were added after the one that catches it.
#[test]
fn functions_finalized_one_at_a_time_ascend_and_their_handlers_are_found() {
    let mut m = jit();
    let throw = "fn0 = %__cranelift_throw(i64, i64, i64, i32, i64, i64)";
    m.define_clif(&format!(
        "function %f0(i64) -> i64 tail {{
    {throw}
block0(v0: i64):
    v1 = get_frame_pointer.i64
    v2 = get_return_address.i64
    v3 = iconst.i64 0
    v4 = ireduce.i32 v0
    call fn0(v3, v1, v2, v4, v0, v3)
    trap user1
}}"
    ))
    .unwrap();
    m.finalize().unwrap();
    const LEVELS: i64 = 60;
    let mut starts = Vec::new();
    for i in 1..=LEVELS {
        m.define_clif(&format!(
            "function %f{i}(i64) -> i64 tail {{
    sig0 = (i64) -> i64 tail
    fn0 = %f{prev} sig0
block0(v0: i64):
    try_call fn0(v0), sig0, block1(ret0), [ tag{i}: block2(exn0, exn1) ]
block1(v1: i64):
    return v1
block2(v2: i64, v3: i64):
    v4 = iconst.i64 {caught}
    v5 = iadd v2, v4
    return v5
}}",
            prev = i - 1,
            caught = 1000 * i,
        ))
        .unwrap();
        m.finalize().unwrap();
        let id = m.get_name(&format!("f{i}")).unwrap();
        let cranelift_exn::cranelift_module::FuncOrDataId::Func(id) = id else {
            panic!("f{i} is a function")
        };
        starts.push(m.get_finalized_function(id).unwrap());
    }
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:x?}");
    let top = format!("f{LEVELS}");
    for tag in [1, 2, 17, LEVELS - 1, LEVELS] {
        // Caught by %f{tag}, which adds 1000 * tag to payload0 (the tag).
        assert_eq!(call1(&m, &top, tag), Ok(tag + 1000 * tag), "tag {tag}");
    }
    assert!(matches!(
        call1(&m, &top, LEVELS + 1),
        Err(CallError::Exception { tag, .. }) if tag == LEVELS as u32 + 1
    ));
}
