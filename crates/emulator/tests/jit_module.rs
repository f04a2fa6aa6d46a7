//! `JitModule` (the `cranelift_module::Module` implementation) on the four
//! emulated ISAs: the toy frontend with loops, calls, a global and
//! throw/try; incremental definitions; data objects (writable, read-only,
//! zeroed, aligned, with function and data relocations); native symbols.

#[allow(dead_code)]
#[path = "../../../examples/toy.rs"]
mod toy;

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::{AbiParam, TrapCode, types};
use cranelift_exn::compile::default_isa;
use cranelift_exn::cranelift_module::{DataDescription, Linkage, Module as _};
use cranelift_exn::isa::{Arch, Endianness};
use cranelift_exn::{CallError, JitModule};
use cranelift_exn_emulator::EmulatedMachine;
use cranelift_exn_testkit::backtrace::{
    RECURSE, assert_capped_recursion, assert_chain_trap, chain,
};
use cranelift_exn_testkit::codegen::call_then;
use cranelift_exn_testkit::data::DataObjects;
use cranelift_exn_testkit::traps::{CALL_POINTER, assert_bad_code_address};

fn module(arch: Arch) -> JitModule<EmulatedMachine> {
    let isa = default_isa(arch).unwrap();
    JitModule::with_machine(EmulatedMachine::new(arch).unwrap(), isa.as_ref()).unwrap()
}

fn i64s(values: &[i64]) -> Vec<DataValue> {
    values.iter().map(|&v| DataValue::I64(v)).collect()
}

const GETTERS: &str = "fn get_calls() { return calls; }";

#[test]
fn the_toy_frontend_runs_with_exceptions_on_every_emulated_isa() {
    for arch in Arch::ALL {
        let mut m = module(arch);
        toy::define_raise(&mut m).unwrap();
        let p = toy::compile(&mut m, toy::DEMO, &toy::Program::default()).unwrap();
        m.finalize_definitions().unwrap();
        let call = |m: &JitModule<EmulatedMachine>, p: &toy::Program, name: &str, args: &[i64]| {
            m.call_function(p.functions[name].0, &i64s(args))
        };
        assert_eq!(call(&m, &p, "fib", &[40]), Ok(i64s(&[102334155])), "{arch}");
        assert_eq!(
            call(&m, &p, "safe_div", &[84, 2]),
            Ok(i64s(&[42])),
            "{arch}"
        );
        assert_eq!(
            call(&m, &p, "safe_div", &[5, 0]),
            Ok(i64s(&[-1005])),
            "{arch}"
        );
        assert_eq!(
            call(&m, &p, "uncaught", &[7]),
            Err(CallError::Exception {
                tag: toy::TOY_TAG,
                payloads: [7, 0]
            }),
            "{arch}"
        );
        match call(&m, &p, "raw_div", &[5, 0]) {
            Err(CallError::Trap { code, function, .. }) => {
                assert_eq!(code, TrapCode::INTEGER_DIVISION_BY_ZERO, "{arch}");
                assert_eq!(function, "%raw_div", "{arch}");
            }
            other => panic!("{arch}: {other:?}"),
        }
        // Incremental: new code calling old code and reading the global.
        let more = toy::compile(
            &mut m,
            &format!("{GETTERS} fn fib_sum(n) {{ return fib(n) + fib(n + 1); }}"),
            &p,
        )
        .unwrap();
        m.finalize_definitions().unwrap();
        assert_eq!(
            call(&m, &more, "fib_sum", &[10]),
            Ok(i64s(&[144])),
            "{arch}"
        );
        assert_eq!(call(&m, &more, "get_calls", &[]), Ok(i64s(&[3])), "{arch}");
        assert_eq!(m.images().len(), 2, "{arch}");
    }
}

#[test]
fn data_objects_and_native_symbols_on_every_emulated_isa() {
    for arch in Arch::ALL {
        let mut m = module(arch);
        let word = |v: u64| match arch.endianness() {
            Endianness::Little => v.to_le_bytes(),
            Endianness::Big => v.to_be_bytes(),
        };
        let data = DataObjects::declare(&mut m, Linkage::Export);
        let DataObjects {
            counter,
            table,
            zeros,
            ..
        } = data;
        let mut d = DataDescription::new();
        d.define(Box::new(word(7)));
        m.define_data(counter, &d).unwrap();
        let mut d = DataDescription::new();
        d.define([10u64, 20, 30, 40].iter().flat_map(|&v| word(v)).collect());
        d.set_align(128);
        m.define_data(table, &d).unwrap();
        let mut d = DataDescription::new();
        d.define_zeroinit(5000);
        d.set_align(32);
        m.define_data(zeros, &d).unwrap();
        m.define_clif(
            "function %triple(i64) -> i64 {
            block0(v0: i64):
                v1 = iconst.i64 3
                v2 = imul v0, v1
                return v2
            }",
        )
        .unwrap();
        let triple = m
            .declare_function("triple", Linkage::Export, &{
                let mut s = m.make_signature();
                s.params.push(AbiParam::new(types::I64));
                s.returns.push(AbiParam::new(types::I64));
                s.call_conv = cranelift_exn::codegen::isa::CallConv::Fast;
                s
            })
            .unwrap();
        data.define_ptrs(&mut m, triple);
        m.define_clif(
            "function %bump(i64) -> i64 {
                gv0 = symbol colocated %counter
            block0(v0: i64):
                v1 = symbol_value.i64 gv0
                v2 = load.i64 v1
                v3 = iadd v2, v0
                store v3, v1
                return v3
            }

            function %read_table(i64) -> i64 {
                gv0 = symbol %table
            block0(v0: i64):
                v1 = symbol_value.i64 gv0
                v2 = iconst.i64 8
                v3 = imul v0, v2
                v4 = iadd v1, v3
                v5 = load.i64 v4
                return v5
            }

            function %via_ptrs(i64) -> i64 {
                gv0 = symbol colocated %ptrs
                sig0 = (i64) -> i64 fast
            block0(v0: i64):
                v1 = symbol_value.i64 gv0
                v2 = load.i64 v1
                v3 = load.i64 v1+8
                v4 = call_indirect sig0, v2(v0)
                v5 = load.i64 v3
                v6 = iadd v4, v5
                return v6
            }

            function %zeros_sum() -> i64 {
                gv0 = symbol colocated %zeros
            block0:
                v1 = symbol_value.i64 gv0
                v2 = load.i64 v1
                v3 = load.i64 v1+4992
                v4 = iadd v2, v3
                return v4
            }

            function %addresses() -> i64, i64 {
                gv0 = symbol colocated %table
                gv1 = symbol colocated %zeros
            block0:
                v0 = symbol_value.i64 gv0
                v1 = symbol_value.i64 gv1
                return v0, v1
            }

            function %poke_ro() -> i64 {
                gv0 = symbol colocated %table
            block0:
                v0 = symbol_value.i64 gv0
                v1 = iconst.i64 99
                store heap_oob v1, v0
                return v1
            }",
        )
        .unwrap();
        m.finalize().unwrap();
        let one = |m: &JitModule<EmulatedMachine>, name: &str, x: &[i64]| m.call(name, &i64s(x));
        assert_eq!(one(&m, "bump", &[5]), Ok(i64s(&[12])), "{arch}");
        assert_eq!(one(&m, "bump", &[5]), Ok(i64s(&[17])), "{arch}");
        for i in 0..4 {
            assert_eq!(
                one(&m, "read_table", &[i]),
                Ok(i64s(&[10 * (i + 1)])),
                "{arch}"
            );
        }
        assert_eq!(one(&m, "via_ptrs", &[4]), Ok(i64s(&[12 + 30])), "{arch}");
        assert_eq!(one(&m, "zeros_sum", &[]), Ok(i64s(&[0])), "{arch}");
        let (table_addr, _) = m.get_finalized_data(table).unwrap();
        let (zeros_addr, zeros_size) = m.get_finalized_data(zeros).unwrap();
        assert_eq!(
            one(&m, "addresses", &[]),
            Ok(i64s(&[table_addr as i64, zeros_addr as i64])),
            "{arch}"
        );
        assert_eq!(
            (table_addr % 128, zeros_addr % 32, zeros_size),
            (0, 0, 5000)
        );
        match one(&m, "poke_ro", &[]) {
            Err(CallError::Trap {
                code,
                function,
                address,
                ..
            }) => {
                assert_eq!(code, TrapCode::HEAP_OUT_OF_BOUNDS, "{arch}");
                assert_eq!(function, "%poke_ro", "{arch}");
                assert_eq!(address, Some(table_addr), "{arch}");
            }
            other => panic!("{arch}: {other:?}"),
        }
        assert_eq!(
            one(&m, "read_table", &[0]),
            Ok(i64s(&[10])),
            "{arch}: intact"
        );

        // A native symbol: a target address (here: loaded code) called
        // directly by its declared ABI.
        let address = m.symbol_address("triple").unwrap();
        let mut sig = m.make_signature();
        sig.params.push(AbiParam::new(types::I64));
        sig.returns.push(AbiParam::new(types::I64));
        sig.call_conv = cranelift_exn::codegen::isa::CallConv::Fast;
        m.define_native_symbol("native_triple", address, Some(sig))
            .unwrap();
        let use_native = call_then(
            "%use_native(i64) -> i64",
            "%native_triple(i64) -> i64 fast",
            "iadd",
            1,
        );
        m.define_clif(&use_native).unwrap();
        m.finalize().unwrap();
        assert_eq!(one(&m, "use_native", &[14]), Ok(i64s(&[43])), "{arch}");
        assert_eq!(
            one(&m, "bump", &[1]),
            Ok(i64s(&[18])),
            "{arch}: old code, old data"
        );
    }
}

#[test]
fn traps_carry_a_backtrace_on_every_emulated_isa() {
    for arch in Arch::ALL {
        let mut m = module(arch);
        m.define_clif(&chain()).unwrap();
        m.finalize().unwrap();
        assert_eq!(m.call("outer", &i64s(&[5])), Ok(i64s(&[8])), "{arch}");
        let err = m.call("outer", &i64s(&[0])).unwrap_err();
        assert_chain_trap(&m, &err, &arch);
        assert!(format!("{err:?}").contains("user9"), "{arch}");

        // A stack overflow: `stk_ovf`, and the backtrace walks out from the
        // frame whose prologue faulted (on s390x, before its back chain is
        // stored), capped.
        m.define_clif(RECURSE).unwrap();
        m.finalize().unwrap();
        let err = m.call("recurse", &i64s(&[0])).unwrap_err();
        assert_capped_recursion(&err, &arch);

        // Another module's code cannot be linked into an emulated one.
        let native = JitModule::with_machine(
            cranelift_exn::native::NativeMachine::new().unwrap(),
            default_isa(Arch::X86_64).unwrap().as_ref(),
        )
        .unwrap();
        let err = m.import_module(&std::sync::Arc::new(native)).unwrap_err();
        assert!(err.to_string().contains("native"), "{arch}: {err}");
    }
}

/// A call from JIT code to an address that holds no code (0, or a data
/// object's address) is a trap of the call, `BAD_CODE_ADDRESS` at that
/// address, with a backtrace from the calling function; the module stays
/// usable.
#[test]
fn a_call_to_an_address_without_code_is_a_trap_on_every_emulated_isa() {
    for arch in Arch::ALL {
        let mut m = module(arch);
        m.define_clif(&format!(
            "{CALL_POINTER}
             function %forty_one() -> i64 {{
             block0:
                 v0 = iconst.i64 41
                 return v0
             }}"
        ))
        .unwrap();
        let table = m
            .declare_data("table", Linkage::Export, true, false)
            .unwrap();
        let mut data = DataDescription::new();
        data.define_zeroinit(64);
        m.define_data(table, &data).unwrap();
        m.finalize().unwrap();
        let (data_address, _) = m.get_finalized_data(table).unwrap();
        let forty_one = m.symbol_address("forty_one").unwrap();
        assert_eq!(
            m.call("call_ptr", &i64s(&[forty_one as i64])),
            Ok(i64s(&[42])),
            "{arch}"
        );
        for target in [0, data_address, data_address + 16] {
            let outcome = m.call("call_ptr", &i64s(&[target as i64]));
            assert_bad_code_address(outcome, target, &arch);
            assert_eq!(
                m.call("call_ptr", &i64s(&[forty_one as i64])),
                Ok(i64s(&[42])),
                "{arch}: after calling {target:#x}"
            );
        }
    }
}
