//! The toy frontend of `examples/toy.rs`, written against
//! `cranelift_module::Module` alone, run on cranelift-jit's `JITModule` and
//! on this crate's `JitModule`: for programs without exceptions, every
//! result and every global's final value agree.

#[allow(dead_code)]
#[path = "../examples/toy.rs"]
mod toy;

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::compile::default_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::native::NativeMachine;
use cranelift_exn::{CallError, JitModule};
use cranelift_jit::{JITBuilder, JITModule};

const PROGRAM: &str = "
global calls = 0;
global acc = -5;
fn fib(n) {
    a = 0; b = 1;
    while n > 0 { t = a + b; a = b; b = t; n = n - 1; }
    calls = calls + 1;
    return a;
}
fn gcd(a, b) {
    while b != 0 { t = a % b; a = b; b = t; }
    return a;
}
fn collatz(n) {
    steps = 0;
    while n != 1 {
        if n % 2 == 0 { n = n / 2; } else { n = 3 * n + 1; }
        steps = steps + 1;
    }
    return steps;
}
fn fact(n) { if n <= 1 { return 1; } return n * fact(n - 1); }
fn mix(a, b, c) {
    acc = acc + a * b - c;
    return gcd(fib(a % 30) + 1, b + 1) * 1000 + collatz(c % 50 + 1) + acc;
}
fn zero() { return calls * 0 - -(acc - acc); }
";

/// Later definitions, added after a first finalize.
const MORE: &str = "fn twice_fib(n) { return fib(n) + fib(n) + calls; }";

const CASES: &[(&str, &[i64])] = &[
    ("fib", &[0]),
    ("fib", &[1]),
    ("fib", &[50]),
    ("gcd", &[1071, 462]),
    ("gcd", &[-48, 18]),
    ("collatz", &[27]),
    ("fact", &[20]),
    ("mix", &[7, 11, 13]),
    ("mix", &[-3, 100, 41]),
    ("zero", &[]),
    ("twice_fib", &[30]),
    ("mix", &[1, 2, 3]),
];

fn on_cranelift_jit() -> (Vec<i64>, Vec<i64>) {
    let isa = default_isa(Arch::host().expect("a supported host")).unwrap();
    let mut module = JITModule::new(JITBuilder::with_isa(
        isa,
        cranelift_exn::cranelift_module::default_libcall_names(),
    ));
    let first = toy::compile(&mut module, PROGRAM, &toy::Program::default()).unwrap();
    module.finalize_definitions().unwrap();
    let more = toy::compile(&mut module, MORE, &first).unwrap();
    module.finalize_definitions().unwrap();
    let mut results = Vec::new();
    for (name, args) in CASES {
        let (id, arity) = more.functions[*name];
        assert_eq!(arity, args.len());
        let f = module.get_finalized_function(id);
        // SAFETY: `f` is a finalized toy function: `extern "C"` (the ISA's
        // default convention, system_v here) taking `arity` i64s and
        // returning one.
        let r = unsafe {
            match args {
                [] => std::mem::transmute::<*const u8, extern "C" fn() -> i64>(f)(),
                [a] => std::mem::transmute::<*const u8, extern "C" fn(i64) -> i64>(f)(*a),
                [a, b] => {
                    std::mem::transmute::<*const u8, extern "C" fn(i64, i64) -> i64>(f)(*a, *b)
                }
                [a, b, c] => std::mem::transmute::<*const u8, extern "C" fn(i64, i64, i64) -> i64>(
                    f,
                )(*a, *b, *c),
                _ => unreachable!(),
            }
        };
        results.push(r);
    }
    let globals = ["calls", "acc"]
        .iter()
        .map(|g| {
            let (ptr, size) = module.get_finalized_data(more.globals[*g]);
            assert_eq!(size, 8);
            // SAFETY: a finalized 8-byte, 8-aligned data object.
            unsafe { (ptr as *const i64).read() }
        })
        .collect();
    (results, globals)
}

fn on_cranelift_exn() -> (Vec<i64>, Vec<i64>) {
    let isa = default_isa(Arch::host().expect("a supported host")).unwrap();
    let mut module = JitModule::with_machine(NativeMachine::new().unwrap(), isa.as_ref()).unwrap();
    let first = toy::compile(&mut module, PROGRAM, &toy::Program::default()).unwrap();
    module.finalize_definitions().unwrap();
    let more = toy::compile(&mut module, MORE, &first).unwrap();
    module.finalize_definitions().unwrap();
    let results = CASES
        .iter()
        .map(|(name, args)| {
            let (id, _) = more.functions[*name];
            let args: Vec<DataValue> = args.iter().map(|&a| DataValue::I64(a)).collect();
            match module.call_function(id, &args).unwrap()[..] {
                [DataValue::I64(v)] => v,
                ref other => panic!("{other:?}"),
            }
        })
        .collect();
    let globals = ["calls", "acc"]
        .iter()
        .map(|g| {
            let (addr, size) = module.get_finalized_data(more.globals[*g]).unwrap();
            assert_eq!(size, 8);
            // SAFETY: a loaded 8-byte, 8-aligned data object.
            unsafe { (addr as *const i64).read() }
        })
        .collect();
    (results, globals)
}

#[test]
fn the_same_frontend_gives_the_same_results_on_both_modules() {
    let (exn_results, exn_globals) = on_cranelift_exn();
    let (jit_results, jit_globals) = on_cranelift_jit();
    assert_eq!(exn_results, jit_results);
    assert_eq!(exn_globals, jit_globals);
    // And they are the right answers, not merely equal.
    assert_eq!(exn_results[2], 12586269025);
    assert_eq!(exn_results[3], 21);
    assert_eq!(exn_results[5], 111);
    assert_eq!(exn_results[6], 2432902008176640000);
    assert_eq!(exn_globals[0], 8, "fib ran 8 times");
}

#[test]
fn the_toy_frontend_with_exceptions_runs_on_cranelift_exn() {
    let isa = default_isa(Arch::host().expect("a supported host")).unwrap();
    let mut module = JitModule::with_machine(NativeMachine::new().unwrap(), isa.as_ref()).unwrap();
    toy::define_raise(&mut module).unwrap();
    let p = toy::compile(&mut module, toy::DEMO, &toy::Program::default()).unwrap();
    module.finalize_definitions().unwrap();
    let call = |name: &str, args: &[i64]| {
        let args: Vec<DataValue> = args.iter().map(|&a| DataValue::I64(a)).collect();
        module.call_function(p.functions[name].0, &args)
    };
    assert_eq!(call("safe_div", &[84, 2]), Ok(vec![DataValue::I64(42)]));
    assert_eq!(call("safe_div", &[5, 0]), Ok(vec![DataValue::I64(-1005)]));
    assert_eq!(
        call("uncaught", &[7]),
        Err(CallError::Exception {
            tag: toy::TOY_TAG,
            payloads: [7, 0]
        })
    );
    match call("raw_div", &[5, 0]) {
        Err(CallError::Trap { code, function, .. }) => {
            assert_eq!(code.to_string(), "int_divz");
            assert_eq!(function, "%raw_div");
        }
        other => panic!("{other:?}"),
    }
}
