//! Native trap delivery coexisting with the rest of the process: signals
//! that are not JIT faults keep their meaning, an embedder can own the
//! handlers, and a jump from JIT code to an address without code is a trap.
//!
//! Every test installs handlers or raises signals, so each runs its body in
//! a child process (this binary re-executed with `--exact NAME` and an
//! environment variable) and checks how the child ended.

use std::process::Output;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::TrapCode;
use cranelift_exn::compile::default_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::native::{NativeMachine, NativeOptions, handle_signal};
use cranelift_exn::{CallError, Module, ModuleBuilder};
use cranelift_exn_testkit::codegen::forwarding;
use cranelift_exn_testkit::traps::{CALL_POINTER, TRAPPING, assert_bad_code_address};

/// With the testkit's [`TRAPPING`] and [`CALL_POINTER`] functions.
const PROGRAM: &str = "
function %trap() -> i64 {
block0:
    trap user7
}

; Store 1 to *v0, then spin until *v1 is non-zero; return it.
function %spin(i64, i64) -> i64 {
block0(v0: i64, v1: i64):
    v2 = iconst.i64 1
    store.i64 notrap v2, v0
    jump block1
block1:
    v3 = load.i64 notrap v1
    brif v3, block2, block1
block2:
    return v3
}
";

/// Set in a child process to the name of the test whose body it runs.
const CHILD: &str = "CRANELIFT_EXN_SIGNALS_CHILD";

/// Run `body` in a child process (this binary, only test `name`); in the
/// parent, return how the child ended. The child exits 0 after `body`.
fn in_child(name: &str, body: impl FnOnce()) -> Output {
    if std::env::var(CHILD).as_deref() == Ok(name) {
        body();
        println!("child done");
        std::process::exit(0);
    }
    cranelift_exn_testkit::rerun::this_test_binary()
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .unwrap()
}

fn describe(output: &Output) -> String {
    format!(
        "{:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_child_succeeded(output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("child done"),
        "the child failed: {}",
        describe(output)
    );
}

fn module_on(machine: NativeMachine) -> Module {
    let arch = Arch::host().expect("a supported host");
    let mut builder = ModuleBuilder::new(default_isa(arch).unwrap());
    builder
        .define_clif(&format!("{TRAPPING}{CALL_POINTER}{PROGRAM}"))
        .unwrap();
    builder.finalize(Box::new(machine)).unwrap()
}

fn module() -> Module {
    module_on(NativeMachine::new().unwrap())
}

fn i64s(values: &[i64]) -> Vec<DataValue> {
    values.iter().map(|&v| DataValue::I64(v)).collect()
}

fn trap_code(outcome: Result<Vec<DataValue>, CallError>) -> TrapCode {
    match outcome {
        Err(CallError::Trap { code, .. }) => code,
        other => panic!("expected a trap, got {other:?}"),
    }
}

/// Each kind of JIT trap (SIGFPE or SIGILL for the division, SIGSEGV for
/// the load, SIGILL for `trap`) is delivered, and a normal call works.
fn assert_traps_are_delivered(module: &Module) {
    assert_eq!(
        trap_code(module.call("divide", &i64s(&[10, 0]))),
        TrapCode::INTEGER_DIVISION_BY_ZERO
    );
    assert_eq!(
        trap_code(module.call("load", &i64s(&[0]))),
        TrapCode::HEAP_OUT_OF_BOUNDS
    );
    assert_eq!(
        trap_code(module.call("trap", &[])),
        TrapCode::unwrap_user(7)
    );
    assert_eq!(module.call("divide", &i64s(&[10, 2])).unwrap(), i64s(&[5]));
}

fn install_handler(
    signal: libc::c_int,
    handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
) {
    // SAFETY: a valid SA_SIGINFO action with an empty mask.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
    }
}

fn current_handler(signal: libc::c_int) -> usize {
    // SAFETY: querying a disposition into a zeroed sigaction.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut action);
        action.sa_sigaction
    }
}

#[test]
fn a_raised_sigsegv_outside_jit_code_leaves_trap_delivery_working() {
    // Rust's own SIGSEGV handler (the one before ours) resets the signal to
    // its default action and returns for a fault it does not own; without
    // this crate the process survives `raise`, so with it the next JIT
    // SIGSEGV must still be a trap.
    let output = in_child(
        "a_raised_sigsegv_outside_jit_code_leaves_trap_delivery_working",
        || {
            let module = module();
            assert_traps_are_delivered(&module);
            // SAFETY: raising a signal in this (child) process.
            assert_eq!(unsafe { libc::raise(libc::SIGSEGV) }, 0);
            println!("survived raise(SIGSEGV)");
            assert_traps_are_delivered(&module);
            // A machine made afterwards works the same.
            assert_traps_are_delivered(&self::module());
        },
    );
    assert_child_succeeded(&output);
}

#[test]
fn a_raised_sigill_outside_jit_code_gets_the_default_action() {
    // No handler was installed before ours: without this crate,
    // raise(SIGILL) ends the process with SIGILL, so it must with it too.
    let output = in_child(
        "a_raised_sigill_outside_jit_code_gets_the_default_action",
        || {
            let module = module();
            assert_traps_are_delivered(&module);
            // SAFETY: raising a signal in this (child) process.
            unsafe { libc::raise(libc::SIGILL) };
            println!("survived raise(SIGILL)");
        },
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGILL),
        "the child should die of SIGILL: {}",
        describe(&output)
    );
}

static FOREIGN: AtomicUsize = AtomicUsize::new(0);
static FOREIGN_CODE: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_foreign(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    FOREIGN.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the kernel's siginfo.
    let code = unsafe { (*info).si_code };
    FOREIGN_CODE.store(
        (signal as usize) << 32 | (code as u32 as usize),
        Ordering::SeqCst,
    );
}

#[test]
fn a_handler_installed_before_sees_foreign_signals_and_traps_still_work() {
    let output = in_child(
        "a_handler_installed_before_sees_foreign_signals_and_traps_still_work",
        || {
            install_handler(libc::SIGILL, count_foreign);
            install_handler(libc::SIGFPE, count_foreign);
            let module = module();
            assert_traps_are_delivered(&module);
            assert_eq!(
                FOREIGN.load(Ordering::SeqCst),
                0,
                "a JIT trap was forwarded"
            );
            // SAFETY: raising signals in this (child) process.
            unsafe {
                libc::raise(libc::SIGILL);
                libc::raise(libc::SIGFPE);
            }
            assert_eq!(FOREIGN.load(Ordering::SeqCst), 2);
            assert_eq!(
                FOREIGN_CODE.load(Ordering::SeqCst),
                (libc::SIGFPE as usize) << 32 | (libc::SI_TKILL as u32 as usize)
            );
            assert_traps_are_delivered(&module);
            assert_eq!(FOREIGN.load(Ordering::SeqCst), 2);
        },
    );
    assert_child_succeeded(&output);
}

/// The word `%spin` waits on; the test's SIGSEGV handler sets it.
static STOP: AtomicU64 = AtomicU64::new(0);
/// Set to 1 by `%spin` once it runs.
static SPINNING: AtomicU64 = AtomicU64::new(0);
static ASYNC_SEGV: AtomicUsize = AtomicUsize::new(0);

extern "C" fn stop_on_async_segv(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel's siginfo.
    if unsafe { (*info).si_code } <= 0 {
        ASYNC_SEGV.fetch_add(1, Ordering::SeqCst);
        STOP.store(42, Ordering::SeqCst);
    } else {
        // A real fault that is not JIT code's: not expected here.
        // SAFETY: async-signal-safe exit.
        unsafe { libc::_exit(3) };
    }
}

#[test]
fn an_asynchronous_sigsegv_while_jit_code_runs_is_not_a_trap() {
    // pthread_kill(SIGSEGV) on a thread spinning in JIT code: the pc is JIT
    // code's, but the signal is not a fault of it; it goes to the handler
    // installed before (which stops the spin), and the call returns.
    let output = in_child(
        "an_asynchronous_sigsegv_while_jit_code_runs_is_not_a_trap",
        || {
            install_handler(libc::SIGSEGV, stop_on_async_segv);
            let worker = std::thread::spawn(move || {
                module().call(
                    "spin",
                    &i64s(&[SPINNING.as_ptr() as i64, STOP.as_ptr() as i64]),
                )
            });
            while SPINNING.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            use std::os::unix::thread::JoinHandleExt;
            // SAFETY: signalling a live thread of this (child) process.
            assert_eq!(
                unsafe { libc::pthread_kill(worker.as_pthread_t(), libc::SIGSEGV) },
                0
            );
            let outcome = worker.join().unwrap();
            assert_eq!(outcome, Ok(i64s(&[42])));
            assert_eq!(ASYNC_SEGV.load(Ordering::SeqCst), 1);
        },
    );
    assert_child_succeeded(&output);
}

static EMBEDDER_FOREIGN: AtomicUsize = AtomicUsize::new(0);

/// An embedder's handler that owns the signals and lets this crate look
/// first, as `handle_signal` documents.
extern "C" fn embedder_handler(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel's pointers; we return right after `true`.
    if unsafe { handle_signal(signal, info, context) } {
        return;
    }
    EMBEDDER_FOREIGN.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the kernel's siginfo.
    if unsafe { (*info).si_code } > 0 {
        // A real fault that is not JIT code's: returning would re-run it.
        // SAFETY: async-signal-safe exit.
        unsafe { libc::_exit(3) };
    }
}

#[test]
fn an_embedder_owning_the_handlers_calls_handle_signal_first() {
    let output = in_child(
        "an_embedder_owning_the_handlers_calls_handle_signal_first",
        || {
            let signals = [libc::SIGILL, libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE];
            for signal in signals {
                install_handler(signal, embedder_handler);
            }
            let options = NativeOptions::new().signal_handlers(false);
            let module = module_on(NativeMachine::with_options(options).unwrap());
            // The machine installed nothing.
            for signal in signals {
                assert_eq!(
                    current_handler(signal),
                    embedder_handler as *const () as usize
                );
            }
            assert_traps_are_delivered(&module);
            assert_eq!(EMBEDDER_FOREIGN.load(Ordering::SeqCst), 0);
            // SAFETY: raising a signal in this (child) process.
            unsafe { libc::raise(libc::SIGSEGV) };
            assert_eq!(EMBEDDER_FOREIGN.load(Ordering::SeqCst), 1);
            assert_traps_are_delivered(&module);
        },
    );
    assert_child_succeeded(&output);
}

#[test]
fn a_call_from_jit_code_to_an_address_without_code_is_a_trap() {
    let output = in_child(
        "a_call_from_jit_code_to_an_address_without_code_is_a_trap",
        || {
            let module = module();
            // SAFETY: an anonymous read-write (not executable) page.
            let page = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    1 << 16,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(page, libc::MAP_FAILED);
            for target in [0u64, page as u64, page as u64 + 0x100] {
                let outcome = module.call("call_ptr", &i64s(&[target as i64]));
                assert_bad_code_address(outcome, target, &"native");
                // The module stays usable.
                assert_traps_are_delivered(&module);
            }
        },
    );
    assert_child_succeeded(&output);
}

#[test]
fn a_null_function_pointer_called_by_a_host_function_still_crashes() {
    // The fetch from 0 is reached from Rust code (a host function the JIT
    // code called), not from JIT code: not a trap, the process's own
    // SIGSEGV (here: the default action).
    let output = in_child(
        "a_null_function_pointer_called_by_a_host_function_still_crashes",
        || {
            let arch = Arch::host().expect("a supported host");
            let mut builder = ModuleBuilder::new(default_isa(arch).unwrap());
            builder
                .define_clif(&forwarding("outer", "host", "(i64) -> i64 system_v"))
                .unwrap();
            let mut sig = cranelift_exn::codegen::ir::Signature::new(
                cranelift_exn::codegen::isa::CallConv::SystemV,
            );
            let i64 =
                cranelift_exn::codegen::ir::AbiParam::new(cranelift_exn::codegen::ir::types::I64);
            sig.params.push(i64);
            sig.returns.push(i64);
            builder
                .define_host_function("host", sig, |_, args| {
                    let [DataValue::I64(address)] = args else {
                        panic!("bad arguments {args:?}");
                    };
                    // SAFETY: deliberately calling a null function pointer
                    // (this child is expected to die of it).
                    let f: extern "C" fn() -> i64 =
                        unsafe { std::mem::transmute(*address as usize) };
                    Ok(vec![DataValue::I64(std::hint::black_box(f)())])
                })
                .unwrap();
            let module = builder
                .finalize(Box::new(NativeMachine::new().unwrap()))
                .unwrap();
            let outcome = module.call("outer", &i64s(&[0]));
            println!("the fault was swallowed: {outcome:?}");
        },
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGSEGV),
        "the child should die of SIGSEGV: {}",
        describe(&output)
    );
}
