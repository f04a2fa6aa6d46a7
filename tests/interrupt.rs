//! Interrupting running calls on the host CPU from another thread, and the
//! machine contract (install once, code never writable).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::Signature;
use cranelift_exn::codegen::isa::CallConv;
use cranelift_exn::compile::default_isa;
use cranelift_exn::interrupt::{NO_MEMBARRIER_VARIABLE, calls_use_membarrier};
use cranelift_exn::isa::Arch;
use cranelift_exn::machine::Machine;
use cranelift_exn::native::NativeMachine;
use cranelift_exn::{CallError, InterruptHandle, Module, ModuleBuilder};
use cranelift_exn_testkit::interrupts::SPIN;
use cranelift_exn_testkit::traps::SCRIBBLE;

/// `%in_host` calls `%wait` (which blocks until the test lets it go) and
/// then `%after`; the module also has [`SPIN`]'s `%spin` and `%answer`.
const IN_HOST: &str = "
function %in_host() -> i64 system_v {
    fn0 = %wait() system_v
    fn1 = %after() system_v
block0:
    call fn0()
    call fn1()
    v0 = iconst.i64 7
    return v0
}
";

/// How long a test waits for a call to end before calling it a hang.
const PATIENCE: Duration = Duration::from_secs(20);

struct Hooks {
    started: Sender<()>,
    go: Mutex<Receiver<()>>,
    after: Arc<AtomicUsize>,
}

fn module(hooks: Hooks) -> Module {
    let arch = Arch::host().expect("a supported host");
    let mut builder = ModuleBuilder::new(default_isa(arch).unwrap());
    builder.define_clif(SPIN).unwrap();
    builder.define_clif(IN_HOST).unwrap();
    let unit = Signature::new(CallConv::SystemV);
    let Hooks { started, go, after } = hooks;
    builder
        .define_host_function("started", unit.clone(), move |_, _| {
            let _ = started.send(());
            Ok(vec![])
        })
        .unwrap();
    builder
        .define_host_function("wait", unit.clone(), move |_, _| {
            let _ = go.lock().unwrap().recv();
            Ok(vec![])
        })
        .unwrap();
    builder
        .define_host_function("after", unit, move |_, _| {
            after.fetch_add(1, Ordering::SeqCst);
            Ok(vec![])
        })
        .unwrap();
    builder
        .finalize(Box::new(NativeMachine::new().unwrap()))
        .unwrap()
}

/// A module on its own thread running `calls` one after the other; the
/// test gets the handle, the `%started` notifications, a sender that lets
/// `%wait` return, the `%after` count and each call's outcome.
struct Runner {
    handle: InterruptHandle,
    started: Receiver<()>,
    go: Sender<()>,
    after: Arc<AtomicUsize>,
    outcomes: Receiver<Result<Vec<DataValue>, CallError>>,
    thread: std::thread::JoinHandle<()>,
}

fn runner(calls: &'static [&'static str]) -> Runner {
    let (started_tx, started) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let after = Arc::new(AtomicUsize::new(0));
    let (handle_tx, handle_rx) = mpsc::channel();
    let (outcome_tx, outcomes) = mpsc::channel();
    let hooks = Hooks {
        started: started_tx,
        go: Mutex::new(go_rx),
        after: after.clone(),
    };
    let thread = std::thread::spawn(move || {
        let module = module(hooks);
        handle_tx.send(module.interrupt_handle()).unwrap();
        for name in calls {
            outcome_tx.send(module.call(name, &[])).unwrap();
        }
    });
    Runner {
        handle: handle_rx.recv().unwrap(),
        started,
        go,
        after,
        outcomes,
        thread,
    }
}

impl Runner {
    fn outcome(&self) -> Result<Vec<DataValue>, CallError> {
        self.outcomes
            .recv_timeout(PATIENCE)
            .expect("the call did not end")
    }
}

#[test]
fn a_loop_without_calls_is_interrupted_and_the_module_stays_usable() {
    if Arch::host().is_none() {
        return;
    }
    let r = runner(&["spin", "answer", "spin", "answer"]);
    for _ in 0..2 {
        r.started.recv_timeout(PATIENCE).unwrap();
        // Let it reach the loop.
        std::thread::sleep(Duration::from_millis(20));
        r.handle.interrupt();
        assert_eq!(r.outcome(), Err(CallError::Interrupted));
        assert_eq!(r.outcome(), Ok(vec![DataValue::I64(42)]));
    }
    r.thread.join().unwrap();
}

#[test]
fn a_handle_from_another_thread_interrupts_immediately_after_the_start() {
    if Arch::host().is_none() {
        return;
    }
    // No pause: the interrupt may land in the host function, the glue, the
    // entry trampoline or the loop; each ends the call.
    let r = runner(&["spin", "spin", "spin", "spin", "spin"]);
    for _ in 0..5 {
        r.started.recv_timeout(PATIENCE).unwrap();
        let handle = r.handle.clone();
        std::thread::spawn(move || handle.interrupt())
            .join()
            .unwrap();
        assert_eq!(r.outcome(), Err(CallError::Interrupted));
    }
    r.thread.join().unwrap();
}

#[test]
fn an_interrupt_during_a_host_function_ends_the_call_when_it_returns() {
    if Arch::host().is_none() {
        return;
    }
    let r = runner(&["in_host", "in_host"]);
    // Wait until the call is inside `%wait`: the thread is then blocked.
    std::thread::sleep(Duration::from_millis(50));
    r.handle.interrupt();
    r.go.send(()).unwrap();
    assert_eq!(r.outcome(), Err(CallError::Interrupted));
    assert_eq!(r.after.load(Ordering::SeqCst), 0, "%after ran");
    // The next call is not affected.
    r.go.send(()).unwrap();
    assert_eq!(r.outcome(), Ok(vec![DataValue::I64(7)]));
    assert_eq!(r.after.load(Ordering::SeqCst), 1);
    r.thread.join().unwrap();
}

#[test]
fn an_interrupt_while_no_call_runs_affects_no_later_call() {
    if Arch::host().is_none() {
        return;
    }
    let r = runner(&[]);
    r.handle.interrupt();
    r.thread.join().unwrap();
    let (started, _) = mpsc::channel();
    let (_, go) = mpsc::channel();
    let m = module(Hooks {
        started,
        go: Mutex::new(go),
        after: Arc::new(AtomicUsize::new(0)),
    });
    m.interrupt_handle().interrupt();
    assert_eq!(m.call("answer", &[]), Ok(vec![DataValue::I64(42)]));
}

#[test]
fn the_handle_is_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<InterruptHandle>();
}

#[test]
fn native_code_is_installed_once_at_its_address() {
    if Arch::host().is_none() {
        return;
    }
    let mut m = NativeMachine::new().unwrap();
    let a = m.allocate_code(64).unwrap();
    let ret = match Arch::host().unwrap() {
        Arch::X86_64 => vec![0xc3],
        Arch::Aarch64 => vec![0xc0, 0x03, 0x5f, 0xd6],
        Arch::Riscv64 => vec![0x67, 0x80, 0x00, 0x00],
        Arch::S390x => vec![0x07, 0xfe],
    };
    // SAFETY: nothing runs the code.
    unsafe {
        assert!(m.install_code(a + 16, &ret).is_err(), "inside a region");
        assert!(m.install_code(0x1000, &ret).is_err(), "never allocated");
        assert!(
            m.install_code(a, &[0; 65]).is_err(),
            "larger than allocated"
        );
        m.install_code(a, &ret).unwrap();
        let error = m.install_code(a, &ret).unwrap_err().to_string();
        assert!(error.contains("already installed"), "{error}");
    }
    // The code is read-execute: it reads back, and stays what was installed.
    // SAFETY: the region is mapped readable.
    let installed = unsafe { std::slice::from_raw_parts(a as *const u8, ret.len()) };
    assert_eq!(installed, &ret[..]);
}

#[test]
fn jit_code_cannot_write_its_own_code() {
    let Some(arch) = Arch::host() else {
        return;
    };
    let module = Module::new(
        Box::new(NativeMachine::new().unwrap()),
        default_isa(arch).unwrap().as_ref(),
        cranelift_exn::reader::parse_functions(SCRIBBLE).unwrap(),
    )
    .unwrap();
    let start = module.image().symbols["%scribble"];
    // SAFETY: installed code, mapped readable.
    let before = unsafe { std::slice::from_raw_parts(start as *const u8, 8) }.to_vec();
    let outcome = module.call("scribble", &[]);
    assert!(
        matches!(outcome, Err(CallError::Trap { .. })),
        "the store into code did not fault: {outcome:?}"
    );
    // SAFETY: as above.
    let after = unsafe { std::slice::from_raw_parts(start as *const u8, 8) };
    assert_eq!(after, &before[..]);
}

#[test]
fn an_interrupt_stops_only_its_own_modules_calls() {
    if Arch::host().is_none() {
        return;
    }
    let a = runner(&["spin"]);
    let b = runner(&["spin"]);
    a.started.recv_timeout(PATIENCE).unwrap();
    b.started.recv_timeout(PATIENCE).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    a.handle.interrupt();
    assert_eq!(a.outcome(), Err(CallError::Interrupted));
    assert!(
        b.outcomes.recv_timeout(Duration::from_millis(200)).is_err(),
        "the other module's call ended"
    );
    b.handle.interrupt();
    assert_eq!(b.outcome(), Err(CallError::Interrupted));
    a.thread.join().unwrap();
    b.thread.join().unwrap();
}

/// A call made while its thread's locals are being destroyed — after the
/// thread's interrupt registration is gone — still runs (it only cannot be
/// interrupted).
#[test]
fn a_call_from_a_thread_local_destructor_runs() {
    if Arch::host().is_none() {
        return;
    }
    struct CallOnDrop {
        module: std::rc::Rc<Module>,
        result: Sender<Result<Vec<DataValue>, CallError>>,
    }
    impl Drop for CallOnDrop {
        fn drop(&mut self) {
            let _ = self.result.send(self.module.call("answer", &[]));
        }
    }
    thread_local! {
        static LATE: std::cell::RefCell<Option<CallOnDrop>> =
            const { std::cell::RefCell::new(None) };
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (started, _started) = mpsc::channel();
        let (_go, go) = mpsc::channel();
        let module = std::rc::Rc::new(module(Hooks {
            started,
            go: Mutex::new(go),
            after: Arc::new(AtomicUsize::new(0)),
        }));
        // Registered before the first call, so destroyed after what that
        // call registers (thread locals are destroyed in reverse order).
        LATE.with(|late| {
            *late.borrow_mut() = Some(CallOnDrop {
                module: module.clone(),
                result: tx,
            })
        });
        assert_eq!(module.call("answer", &[]), Ok(vec![DataValue::I64(42)]));
    })
    .join()
    .unwrap();
    assert_eq!(
        rx.recv_timeout(PATIENCE)
            .expect("the destructor's call ended"),
        Ok(vec![DataValue::I64(42)])
    );
}

/// With [`NO_MEMBARRIER_VARIABLE`] set, calls publish their interrupt state
/// with a sequentially consistent store; otherwise they use `membarrier`
/// exactly when the kernel offers its private expedited command.
#[test]
fn the_fence_mode_follows_the_kernel_and_the_environment() {
    if Arch::host().is_none() {
        return;
    }
    let _machine = NativeMachine::new().unwrap();
    if std::env::var_os(NO_MEMBARRIER_VARIABLE).is_some() {
        assert!(!calls_use_membarrier());
        return;
    }
    // membarrier(MEMBARRIER_CMD_QUERY): the commands the kernel offers.
    // SAFETY: a query without pointers.
    let commands = unsafe { libc::syscall(libc::SYS_membarrier, 0, 0) };
    let private_expedited = 1 << 3;
    assert_eq!(
        calls_use_membarrier(),
        commands > 0 && commands & private_expedited != 0
    );
}

/// Every other test of this file again, in a child process whose calls do
/// without `membarrier`: interrupts still stop every call they must.
#[test]
fn interrupts_work_without_membarrier() {
    if Arch::host().is_none() || std::env::var_os(NO_MEMBARRIER_VARIABLE).is_some() {
        return;
    }
    let output = cranelift_exn_testkit::rerun::this_test_binary()
        .args(["--skip", "interrupts_work_without_membarrier"])
        .env(NO_MEMBARRIER_VARIABLE, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success()
            && stdout.contains("the_fence_mode_follows_the_kernel_and_the_environment ... ok")
            && stdout
                .contains("a_loop_without_calls_is_interrupted_and_the_module_stays_usable ... ok"),
        "the child failed: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
