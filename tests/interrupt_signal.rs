//! The interrupt signal coexists with a handler the process installed
//! before: every SIGURG this crate did not send reaches it, none it sent
//! does.
//! (Its own test binary: the handler must be installed before the first
//! `NativeMachine`.)

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use cranelift_exn::codegen::data_value::DataValue;
use cranelift_exn::codegen::ir::Signature;
use cranelift_exn::codegen::isa::CallConv;
use cranelift_exn::compile::default_isa;
use cranelift_exn::interrupt::INTERRUPT_SIGNAL;
use cranelift_exn::isa::Arch;
use cranelift_exn::native::NativeMachine;
use cranelift_exn::{CallError, InterruptHandle, ModuleBuilder};

static RECEIVED: AtomicUsize = AtomicUsize::new(0);
/// Whether `%raise` interrupts its own call first.
static INTERRUPT_FIRST: AtomicBool = AtomicBool::new(false);
static HANDLE: OnceLock<InterruptHandle> = OnceLock::new();

extern "C" fn count(_: libc::c_int) {
    RECEIVED.fetch_add(1, Ordering::SeqCst);
}

fn raise_here() {
    // SAFETY: signalling the calling thread, whose handler is installed.
    unsafe { libc::pthread_kill(libc::pthread_self(), INTERRUPT_SIGNAL) };
}

#[test]
fn a_sigurg_that_interrupts_nothing_goes_to_the_previous_handler() {
    let Some(arch) = Arch::host() else {
        return;
    };
    // SAFETY: a plain handler with an empty mask.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = count as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(INTERRUPT_SIGNAL, &action, std::ptr::null_mut()),
            0
        );
    }
    let mut builder = ModuleBuilder::new(default_isa(arch).unwrap());
    builder
        .define_clif(
            "
function %poke() -> i64 system_v {
    fn0 = %raise() system_v
block0:
    call fn0()
    v0 = iconst.i64 5
    return v0
}",
        )
        .unwrap();
    builder
        .define_host_function("raise", Signature::new(CallConv::SystemV), |_, _| {
            if INTERRUPT_FIRST.load(Ordering::SeqCst) {
                HANDLE.get().unwrap().interrupt();
            }
            raise_here();
            Ok(vec![])
        })
        .unwrap();
    let module = builder
        .finalize(Box::new(NativeMachine::new().unwrap()))
        .unwrap();

    // No call running.
    raise_here();
    assert_eq!(RECEIVED.load(Ordering::SeqCst), 1);
    // A call running, not interrupted: the signal is not ours, and the call
    // goes on.
    assert_eq!(module.call("poke", &[]), Ok(vec![DataValue::I64(5)]));
    assert_eq!(RECEIVED.load(Ordering::SeqCst), 2);
    // An interrupted call: the interrupt's own signals (sent, and resent,
    // while the host function runs) never reach the previous handler; the
    // host function's `pthread_kill` does, as any SIGURG this crate did not
    // send. The call ends as the host function returns.
    HANDLE.set(module.interrupt_handle()).unwrap();
    INTERRUPT_FIRST.store(true, Ordering::SeqCst);
    assert_eq!(module.call("poke", &[]), Err(CallError::Interrupted));
    // Time for any late resend of the interrupt to arrive (and be dropped).
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(RECEIVED.load(Ordering::SeqCst), 3);
    // Later calls are not interrupted.
    INTERRUPT_FIRST.store(false, Ordering::SeqCst);
    assert_eq!(module.call("poke", &[]), Ok(vec![DataValue::I64(5)]));
    assert_eq!(RECEIVED.load(Ordering::SeqCst), 4);
}
