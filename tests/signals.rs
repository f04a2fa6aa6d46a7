//! Native trap delivery coexisting with the rest of the process: signals
//! that are not JIT faults keep their meaning, an embedder can own the
//! handlers, and a jump from JIT code to an address without code is a trap.
//!
//! Every test installs handlers or raises signals, so each runs its body in
//! a child process (this binary re-executed with `--exact NAME` and an
//! environment variable) and checks how the child ended.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::TrapCode;
use cranelift_exn::compile::default_isa;
use cranelift_exn::isa::Arch;
use cranelift_exn::native::{NativeMachine, NativeOptions, handle_signal};
use cranelift_exn::{CallError, Module, ModuleBuilder};
use cranelift_exn_testkit::codegen::forwarding;
use cranelift_exn_testkit::rerun::{assert_child_succeeded, describe, in_child};
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

/// The handler each signal had before [`install_chaining`] replaced it.
static PREVIOUS_HANDLER: [AtomicUsize; 65] = [const { AtomicUsize::new(0) }; 65];
static CHAINED: AtomicUsize = AtomicUsize::new(0);

/// A handler installed after ours that counts, then calls ours (as a
/// crash reporter that chains to the previous handler does).
extern "C" fn count_and_chain(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    CHAINED.fetch_add(1, Ordering::SeqCst);
    let previous = PREVIOUS_HANDLER[signal as usize].load(Ordering::SeqCst);
    // SAFETY: the SA_SIGINFO handler that was installed before this one.
    let previous: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
        unsafe { std::mem::transmute(previous) };
    previous(signal, info, context);
}

/// The same as a tail call: it jumps to the previous handler, which finds
/// the kernel's signal frame right at its stack pointer.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
extern "C" fn tail_chain(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    std::arch::naked_asm!(
        "lea rax, [rip + {handlers}]",
        "mov rax, [rax + 8 * rdi]",
        "jmp rax",
        handlers = sym PREVIOUS_HANDLER,
    )
}

/// Install `handler` for `signal` the way most handlers are: without
/// SA_NODEFER and blocking every signal while it runs; remember the
/// previous handler for it.
fn install_chaining(signal: libc::c_int, handler: usize) {
    // SAFETY: a valid SA_SIGINFO action; storage for the previous one.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigfillset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(signal, &action, &mut previous), 0);
        assert_ne!(previous.sa_flags & libc::SA_SIGINFO, 0);
        PREVIOUS_HANDLER[signal as usize].store(previous.sa_sigaction, Ordering::SeqCst);
    }
}

/// This thread's blocked signals among `signals`.
fn blocked(signals: &[libc::c_int]) -> Vec<libc::c_int> {
    // SAFETY: querying this thread's mask into a zeroed set.
    unsafe {
        let mut current: libc::sigset_t = std::mem::zeroed();
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut current),
            0
        );
        signals
            .iter()
            .copied()
            .filter(|&s| libc::sigismember(&current, s) == 1)
            .collect()
    }
}

const FAULT_SIGNALS: [libc::c_int; 3] = [libc::SIGILL, libc::SIGSEGV, libc::SIGFPE];

/// With `handler` installed over ours, chaining to it, JIT traps are
/// delivered again and again, and leave no signal blocked.
fn traps_work_through(handler: usize) {
    let module = module();
    for signal in FAULT_SIGNALS {
        install_chaining(signal, handler);
    }
    for _ in 0..3 {
        assert_traps_are_delivered(&module);
        assert_eq!(blocked(&FAULT_SIGNALS), []);
    }
}

#[test]
fn a_handler_installed_after_ours_may_chain_to_it() {
    let output = in_child("a_handler_installed_after_ours_may_chain_to_it", || {
        traps_work_through(count_and_chain as *const () as usize);
        assert_eq!(CHAINED.load(Ordering::SeqCst), 9);
    });
    assert_child_succeeded(&output);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn a_handler_installed_after_ours_may_tail_call_it() {
    // Our handler then runs on the kernel's signal frame, but with the
    // other handler's signal mask (every signal blocked): it must not
    // leave without the kernel restoring the interrupted code's.
    let output = in_child("a_handler_installed_after_ours_may_tail_call_it", || {
        traps_work_through(tail_chain as *const () as usize);
    });
    assert_child_succeeded(&output);
}

/// The x87 control word and MXCSR of this thread.
#[cfg(target_arch = "x86_64")]
fn fp_control() -> (u16, u32) {
    let (mut cw, mut mxcsr) = (0u16, 0u32);
    // SAFETY: stores of the control registers into locals.
    unsafe {
        std::arch::asm!(
            "fnstcw word ptr [{cw}]",
            "stmxcsr dword ptr [{mxcsr}]",
            cw = in(reg) &mut cw,
            mxcsr = in(reg) &mut mxcsr,
        );
    }
    (cw, mxcsr)
}

#[cfg(target_arch = "x86_64")]
fn set_fp_control(cw: u16, mxcsr: u32) {
    // SAFETY: valid control-word values (no reserved bits).
    unsafe {
        std::arch::asm!(
            "fldcw word ptr [{cw}]",
            "ldmxcsr dword ptr [{mxcsr}]",
            cw = in(reg) &cw,
            mxcsr = in(reg) &mxcsr,
        );
    }
}

#[test]
fn a_trap_leaves_the_signal_mask_and_fp_control_words_as_they_were() {
    // A blocked signal stays blocked, the fault signals are not left
    // blocked, and (x86_64) the callee-saved rounding and precision
    // controls the caller set survive: the handler runs with the defaults.
    let output = in_child(
        "a_trap_leaves_the_signal_mask_and_fp_control_words_as_they_were",
        || {
            let module = module();
            // SAFETY: blocking SIGUSR1 on this thread.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGUSR1);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            // Round toward zero (MXCSR.RC = 11), single precision (x87
            // PC = 00); exceptions masked as by default.
            #[cfg(target_arch = "x86_64")]
            let (default_cw, default_mxcsr) = fp_control();
            #[cfg(target_arch = "x86_64")]
            set_fp_control(0x007f, 0x7f80);
            for _ in 0..3 {
                assert_traps_are_delivered(&module);
            }
            #[cfg(target_arch = "x86_64")]
            {
                let (cw, mxcsr) = fp_control();
                set_fp_control(default_cw, default_mxcsr);
                // The MXCSR flags (bits 0-5) are status, not control.
                assert_eq!((cw, mxcsr & !0x3f), (0x007f, 0x7f80));
            }
            let mut signals = FAULT_SIGNALS.to_vec();
            signals.push(libc::SIGUSR1);
            assert_eq!(blocked(&signals), [libc::SIGUSR1]);
        },
    );
    assert_child_succeeded(&output);
}

/// This thread's PKRU register (protection keys must be enabled).
#[cfg(target_arch = "x86_64")]
fn pkru() -> u32 {
    let pkru: u32;
    // SAFETY: `rdpkru` with ecx 0, where protection keys are enabled.
    unsafe {
        std::arch::asm!("rdpkru", in("ecx") 0, out("eax") pkru, out("edx") _);
    }
    pkru
}

#[cfg(target_arch = "x86_64")]
#[test]
fn a_trap_leaves_the_threads_protection_keys_as_they_were() {
    // The kernel runs handlers with its default PKRU and only
    // `rt_sigreturn` restores the interrupted code's: a thread that changed
    // its protection keys must get them back (the handler may not leave
    // directly), one that did not may leave directly (tested by the other
    // tests on a CPU with protection keys).
    let output = in_child(
        "a_trap_leaves_the_threads_protection_keys_as_they_were",
        || {
            let module = module();
            // pkey_alloc(0, PKEY_DISABLE_WRITE): a key whose access rights
            // this thread's PKRU now holds, unlike the kernel's default.
            // SAFETY: system calls without pointers.
            let key = unsafe { libc::syscall(libc::SYS_pkey_alloc, 0, 2) };
            if key < 0 {
                // No protection keys on this CPU or kernel: nothing to keep.
                return;
            }
            let before = pkru();
            for _ in 0..3 {
                assert_traps_are_delivered(&module);
            }
            let after = pkru();
            // SAFETY: as above.
            unsafe { libc::syscall(libc::SYS_pkey_free, key) };
            assert_eq!(after, before, "PKRU after traps");
        },
    );
    assert_child_succeeded(&output);
}

#[test]
fn an_autodisarm_alternate_stack_is_armed_again_after_a_trap() {
    // The kernel disarms an SS_AUTODISARM alternate stack while a handler
    // runs on it and re-arms it at rt_sigreturn: a trap delivered on it
    // must leave it armed.
    const SS_AUTODISARM: libc::c_int = 1 << 31;
    let output = in_child(
        "an_autodisarm_alternate_stack_is_armed_again_after_a_trap",
        || {
            std::thread::spawn(|| {
                let size = 256 * 1024;
                // SAFETY: an anonymous mapping made this thread's
                // alternate stack, the previous one put back at the end.
                unsafe {
                    let base = libc::mmap(
                        std::ptr::null_mut(),
                        size,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    );
                    assert_ne!(base, libc::MAP_FAILED);
                    let stack = libc::stack_t {
                        ss_sp: base,
                        ss_flags: SS_AUTODISARM,
                        ss_size: size,
                    };
                    let mut previous: libc::stack_t = std::mem::zeroed();
                    if libc::sigaltstack(&stack, &mut previous) != 0 {
                        // QEMU's user mode, for one, has no SS_AUTODISARM:
                        // no such stack, nothing to check.
                        let error = std::io::Error::last_os_error();
                        assert_eq!(error.raw_os_error(), Some(libc::EINVAL), "{error}");
                        eprintln!("SS_AUTODISARM is not supported here: {error}");
                        libc::munmap(base, size);
                        return;
                    }
                    let module = module();
                    for _ in 0..3 {
                        assert_traps_are_delivered(&module);
                        let mut current: libc::stack_t = std::mem::zeroed();
                        assert_eq!(libc::sigaltstack(std::ptr::null(), &mut current), 0);
                        assert_eq!(current.ss_flags & libc::SS_DISABLE, 0, "disarmed");
                        assert_eq!((current.ss_sp, current.ss_size), (base, size));
                    }
                    assert_eq!(libc::sigaltstack(&previous, std::ptr::null_mut()), 0);
                }
            })
            .join()
            .unwrap();
        },
    );
    assert_child_succeeded(&output);
}

/// The restorer the kernel returns to from `signal`'s handler.
#[cfg(target_arch = "x86_64")]
fn restorer(signal: libc::c_int) -> usize {
    // SAFETY: querying a disposition into a zeroed sigaction.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(signal, std::ptr::null(), &mut action), 0);
        action.sa_restorer.map_or(0, |f| f as usize)
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn our_handler_put_back_through_glibc_names_its_own_restorer_again() {
    // Saving our disposition and putting it back with glibc's `sigaction`
    // (as code that installs a handler for a while does) makes it name
    // glibc's restorer, with which our handler cannot leave directly; the
    // next trap installs it again as it was, and traps keep working.
    let output = in_child(
        "our_handler_put_back_through_glibc_names_its_own_restorer_again",
        || {
            let module = module();
            let ours = restorer(libc::SIGFPE);
            // SAFETY: saving and putting back the disposition as it was.
            unsafe {
                let mut saved: libc::sigaction = std::mem::zeroed();
                assert_eq!(
                    libc::sigaction(libc::SIGFPE, std::ptr::null(), &mut saved),
                    0
                );
                assert_eq!(
                    libc::sigaction(libc::SIGFPE, &saved, std::ptr::null_mut()),
                    0
                );
            }
            assert_ne!(restorer(libc::SIGFPE), ours, "glibc names its own");
            for _ in 0..3 {
                assert_traps_are_delivered(&module);
                assert_eq!(restorer(libc::SIGFPE), ours);
            }
        },
    );
    assert_child_succeeded(&output);
}
