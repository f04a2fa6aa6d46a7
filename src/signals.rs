//! Native trap delivery without setjmp/longjmp.
//!
//! SIGILL, SIGSEGV, SIGBUS and SIGFPE get one process-wide handler. When the
//! faulting instruction is JIT code of the call running on this thread (the
//! thread's innermost [`crate::native::NativeMachine`] entry), the handler
//! rewrites the interrupted context to the entry trampoline's handler — its
//! address, stack pointer and frame pointer were recorded by the trampoline —
//! and returns; the kernel then resumes there. The entry trampoline's
//! `try_call` clobbers every register on that edge, so nothing else needs
//! restoring. Any other signal goes to the handler that was installed before.

use std::cell::Cell;
use std::sync::OnceLock;

use crate::error::Error;
use crate::machine::{Fault, FaultKind};

/// The signals this module handles, in the order of [`PREVIOUS`].
const SIGNALS: [libc::c_int; 4] = [libc::SIGILL, libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE];

/// Bytes of alternate signal stack given to threads that have none (so a
/// stack overflow can still be delivered).
const ALT_STACK_SIZE: usize = 64 * 1024;

/// The actions that were installed before ours, per [`SIGNALS`] entry.
static PREVIOUS: OnceLock<Result<[libc::sigaction; 4], String>> = OnceLock::new();

/// Where to resume after a delivered fault.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resume {
    pub pc: u64,
    pub sp: u64,
    pub fp: u64,
}

/// Install the handlers (once per process).
pub(crate) fn install() -> Result<(), Error> {
    let result = PREVIOUS.get_or_init(|| {
        let mut previous: [libc::sigaction; 4] =
            // SAFETY: sigaction is plain data; all-zero is a valid value.
            unsafe { std::mem::zeroed() };
        for (i, &signal) in SIGNALS.iter().enumerate() {
            // SAFETY: we fill a zeroed sigaction with a valid handler, an
            // empty mask and flags, and pass valid pointers.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(signal, &action, &mut previous[i]) != 0 {
                    return Err(format!(
                        "sigaction({signal}): {}",
                        std::io::Error::last_os_error()
                    ));
                }
            }
        }
        Ok(previous)
    });
    result
        .as_ref()
        .map(|_| ())
        .map_err(|e| Error::Machine(format!("installing signal handlers: {e}")))
}

/// An alternate signal stack this crate mapped for the current thread.
struct AltStack {
    base: *mut libc::c_void,
    len: usize,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: disable the alternate stack before unmapping it; both calls
        // only concern this thread and the mapping we made.
        unsafe {
            let disable = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            libc::sigaltstack(&disable, std::ptr::null_mut());
            libc::munmap(self.base, self.len);
        }
    }
}

thread_local! {
    static ALT_STACK: Cell<Option<bool>> = const { Cell::new(None) };
    static OWNED_ALT_STACK: std::cell::RefCell<Option<AltStack>> = const { std::cell::RefCell::new(None) };
}

/// Make sure this thread has an alternate signal stack, so that a stack
/// overflow in JIT code can be delivered. Threads spawned by Rust's standard
/// library already have one; others get one mapped here, freed at thread
/// exit.
pub(crate) fn ensure_alt_stack() -> Result<(), Error> {
    if ALT_STACK.with(|c| c.get()).is_some() {
        return Ok(());
    }
    // SAFETY: querying the current alternate stack with valid pointers.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
    if rc != 0 {
        return Err(Error::Machine(format!(
            "sigaltstack: {}",
            std::io::Error::last_os_error()
        )));
    }
    if current.ss_flags & libc::SS_DISABLE == 0 && current.ss_size >= libc::MINSIGSTKSZ {
        ALT_STACK.with(|c| c.set(Some(false)));
        return Ok(());
    }
    // SAFETY: an anonymous private mapping, then registering it as this
    // thread's alternate stack.
    unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            ALT_STACK_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if base == libc::MAP_FAILED {
            return Err(Error::Machine(format!(
                "mapping an alternate signal stack: {}",
                std::io::Error::last_os_error()
            )));
        }
        let stack = libc::stack_t {
            ss_sp: base,
            ss_flags: 0,
            ss_size: ALT_STACK_SIZE,
        };
        if libc::sigaltstack(&stack, std::ptr::null_mut()) != 0 {
            let e = std::io::Error::last_os_error();
            libc::munmap(base, ALT_STACK_SIZE);
            return Err(Error::Machine(format!("sigaltstack: {e}")));
        }
        OWNED_ALT_STACK.with(|s| {
            *s.borrow_mut() = Some(AltStack {
                base,
                len: ALT_STACK_SIZE,
            })
        });
    }
    ALT_STACK.with(|c| c.set(Some(true)));
    Ok(())
}

/// The registers a delivery reads and rewrites, per host architecture.
#[cfg(target_arch = "x86_64")]
mod context {
    /// The interrupted program counter.
    pub(super) unsafe fn pc(uc: *mut libc::ucontext_t) -> u64 {
        // SAFETY: the kernel passed a valid ucontext (caller's contract).
        unsafe { (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] as u64 }
    }

    /// The interrupted frame pointer.
    pub(super) unsafe fn fp(uc: *mut libc::ucontext_t) -> u64 {
        // SAFETY: as above.
        unsafe { (*uc).uc_mcontext.gregs[libc::REG_RBP as usize] as u64 }
    }

    /// Resume at `to`, with zero payload registers (`rax`, `rdx`).
    pub(super) unsafe fn redirect(uc: *mut libc::ucontext_t, to: super::Resume) {
        // SAFETY: as above; the kernel restores these registers on return.
        let gregs = unsafe { &mut (*uc).uc_mcontext.gregs };
        gregs[libc::REG_RIP as usize] = to.pc as i64;
        gregs[libc::REG_RSP as usize] = to.sp as i64;
        gregs[libc::REG_RBP as usize] = to.fp as i64;
        gregs[libc::REG_RAX as usize] = 0;
        gregs[libc::REG_RDX as usize] = 0;
    }
}

#[cfg(target_arch = "aarch64")]
mod context {
    pub(super) unsafe fn pc(uc: *mut libc::ucontext_t) -> u64 {
        // SAFETY: the kernel passed a valid ucontext (caller's contract).
        unsafe { (*uc).uc_mcontext.pc }
    }

    pub(super) unsafe fn fp(uc: *mut libc::ucontext_t) -> u64 {
        // SAFETY: as above.
        unsafe { (*uc).uc_mcontext.regs[29] }
    }

    pub(super) unsafe fn redirect(uc: *mut libc::ucontext_t, to: super::Resume) {
        // SAFETY: as above; the kernel restores these registers on return.
        let m = unsafe { &mut (*uc).uc_mcontext };
        m.pc = to.pc;
        m.sp = to.sp;
        m.regs[29] = to.fp;
        m.regs[0] = 0;
        m.regs[1] = 0;
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod context {
    // Native trap delivery is implemented for x86_64 and aarch64 hosts; on
    // others every fault goes to the previous handler.
    pub(super) unsafe fn pc(_uc: *mut libc::ucontext_t) -> u64 {
        0
    }

    pub(super) unsafe fn fp(_uc: *mut libc::ucontext_t) -> u64 {
        0
    }

    pub(super) unsafe fn redirect(_uc: *mut libc::ucontext_t, _to: super::Resume) {}
}

/// Whether `context` can rewrite signal contexts on this host.
pub(crate) const DELIVERS_TRAPS: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

extern "C" fn on_signal(signal: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let uc = uc.cast::<libc::ucontext_t>();
    if DELIVERS_TRAPS {
        // SAFETY: the kernel passes valid siginfo and ucontext pointers.
        let (pc, fp, address) =
            unsafe { (context::pc(uc), context::fp(uc), (*info).si_addr() as u64) };
        let kind = match signal {
            libc::SIGILL => FaultKind::IllegalInstruction,
            libc::SIGFPE => FaultKind::Arithmetic,
            _ => FaultKind::MemoryAccess,
        };
        let fault = Fault {
            pc,
            kind,
            address: (kind == FaultKind::MemoryAccess).then_some(address),
            fp: Some(fp),
        };
        if let Some(resume) = crate::native::deliver_fault(fault) {
            // SAFETY: as above.
            unsafe { context::redirect(uc, resume) };
            return;
        }
    }
    forward(signal, info, uc.cast());
}

/// Hand a signal that is not ours to the handler installed before us.
fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let Some(Ok(previous)) = PREVIOUS.get() else {
        return;
    };
    let Some(index) = SIGNALS.iter().position(|&s| s == signal) else {
        return;
    };
    let action = &previous[index];
    // SAFETY: the previous action is what the process had installed; we call
    // it the way its flags say, or reinstate it so the faulting instruction
    // re-raises the signal with that disposition when we return.
    unsafe {
        if action.sa_sigaction == libc::SIG_DFL || action.sa_sigaction == libc::SIG_IGN {
            libc::sigaction(signal, action, std::ptr::null_mut());
        } else if action.sa_flags & libc::SA_SIGINFO != 0 {
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(action.sa_sigaction);
            handler(signal, info, uc);
        } else {
            let handler: extern "C" fn(libc::c_int) = std::mem::transmute(action.sa_sigaction);
            handler(signal);
        }
    }
}

/// The action of [`crate::interrupt::INTERRUPT_SIGNAL`] installed before
/// ours.
static PREVIOUS_INTERRUPT: OnceLock<Result<libc::sigaction, String>> = OnceLock::new();

/// Install the handler of [`crate::interrupt::INTERRUPT_SIGNAL`] (once per
/// process): an interrupted call running JIT code on the receiving thread
/// resumes at its entry trampoline's handler.
pub(crate) fn install_interrupt() -> Result<(), Error> {
    let signal = crate::interrupt::INTERRUPT_SIGNAL;
    let result = PREVIOUS_INTERRUPT.get_or_init(|| {
        // SAFETY: a zeroed sigaction filled with a valid handler, an empty
        // mask and flags; valid pointers. SA_RESTART: host code the signal
        // lands in sees as few EINTRs as possible.
        unsafe {
            let mut previous: libc::sigaction = std::mem::zeroed();
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_interrupt as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, &mut previous) != 0 {
                return Err(format!(
                    "sigaction({signal}): {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(previous)
        }
    });
    result
        .as_ref()
        .map(|_| ())
        .map_err(|e| Error::Machine(format!("installing the interrupt handler: {e}")))
}

extern "C" fn on_interrupt(signal: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let uc = uc.cast::<libc::ucontext_t>();
    // SAFETY: the kernel passes a valid ucontext.
    let pc = unsafe { context::pc(uc) };
    match crate::native::deliver_interrupt(pc) {
        crate::native::InterruptDelivery::Resume(resume) => {
            // SAFETY: as above.
            unsafe { context::redirect(uc, resume) }
        }
        crate::native::InterruptDelivery::Later => {}
        crate::native::InterruptDelivery::NotOurs => {
            let Some(Ok(previous)) = PREVIOUS_INTERRUPT.get() else {
                return;
            };
            // SIG_DFL (ignore, for SIGURG) and SIG_IGN: nothing to do.
            if previous.sa_sigaction == libc::SIG_DFL || previous.sa_sigaction == libc::SIG_IGN {
                return;
            }
            // SAFETY: the previous action is what the process had installed;
            // its handler is called the way its flags say.
            unsafe {
                if previous.sa_flags & libc::SA_SIGINFO != 0 {
                    let handler: extern "C" fn(
                        libc::c_int,
                        *mut libc::siginfo_t,
                        *mut libc::c_void,
                    ) = std::mem::transmute(previous.sa_sigaction);
                    handler(signal, info, uc.cast());
                } else {
                    let handler: extern "C" fn(libc::c_int) =
                        std::mem::transmute(previous.sa_sigaction);
                    handler(signal);
                }
            }
        }
    }
}
