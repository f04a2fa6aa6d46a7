//! Native trap delivery without setjmp/longjmp, coexisting with the
//! process's other signal handling.
//!
//! SIGILL, SIGSEGV, SIGBUS and SIGFPE get one process-wide handler (unless
//! the embedder opts out, see [`crate::native::NativeOptions`]). When a
//! synchronous fault happened in JIT code of the call running on this thread
//! (the thread's innermost [`crate::native::NativeMachine`] entry), the
//! handler rewrites the interrupted context to the entry trampoline's
//! handler — its address, stack pointer and frame pointer were recorded by
//! the trampoline — and returns; the kernel then resumes there. The entry
//! trampoline's handler needs nothing but its frame, and the host's call of
//! the trampoline treats every register as clobbered (`call`), so nothing
//! else needs restoring. On x86_64 the handler jumps there itself when that
//! is provably what the kernel's return would do, saving the
//! `rt_sigreturn` system call (see [`exit`]).
//!
//! Everything else — a fault outside JIT code, an asynchronous signal
//! (`kill`, `tkill`, `sigqueue`: `si_code <= 0`) — is handled as it would be
//! without this crate: by the handler that was installed before ours, or by
//! the default action. A previous handler that changes the disposition while
//! we forward to it (Rust's own SIGSEGV handler resets to `SIG_DFL` and
//! returns) gets that disposition recorded as the new "previous" one, and
//! ours goes back in place, so trap delivery keeps working whenever the
//! process survives.
//!
//! The interrupt signal ([`crate::interrupt::INTERRUPT_SIGNAL`]) has a
//! handler of its own: it stops an interrupted call running JIT code on the
//! receiving thread the same way, and passes any other delivery to the
//! handler installed before.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use super::thread::{
    InterruptDelivery, Resume, SignalFault, deliver_interrupt, deliver_signal_fault,
};
use crate::error::Error;
use crate::machine::{Fault, FaultKind};

mod exit;

/// The signals this module handles, in the order of [`PREVIOUS`].
const SIGNALS: [libc::c_int; 4] = [libc::SIGILL, libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE];

/// Bytes of alternate signal stack given to threads that have none (so a
/// stack overflow can still be delivered), at least; see [`alt_stack_size`].
const ALT_STACK_SIZE: usize = 64 * 1024;

/// The action a handled signal had before ours (or, after a forward changed
/// it, the one it would have now without us).
struct PreviousAction {
    /// Held (with every signal blocked on the holding thread) while `action`
    /// is read or written.
    lock: AtomicBool,
    action: UnsafeCell<libc::sigaction>,
}

// SAFETY: `action` is only accessed under `lock`.
unsafe impl Sync for PreviousAction {}

impl PreviousAction {
    const fn new() -> Self {
        PreviousAction {
            lock: AtomicBool::new(false),
            // SAFETY: sigaction is plain data; all-zero is `SIG_DFL`.
            action: UnsafeCell::new(unsafe { std::mem::zeroed() }),
        }
    }

    /// Run `f` on the action, with every signal blocked on this thread so
    /// that a signal cannot re-enter while the lock is held. Async-signal
    /// safe.
    fn with<R>(&self, f: impl FnOnce(&mut libc::sigaction) -> R) -> R {
        let _blocked = BlockAll::new();
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: the lock gives exclusive access.
        let result = f(unsafe { &mut *self.action.get() });
        self.lock.store(false, Ordering::Release);
        result
    }
}

static PREVIOUS: [PreviousAction; 4] = [
    PreviousAction::new(),
    PreviousAction::new(),
    PreviousAction::new(),
    PreviousAction::new(),
];

/// Serializes [`install`] and [`reinstall`] (never taken in a signal
/// handler). Holds whether the handlers are installed.
static INSTALL: Mutex<bool> = Mutex::new(false);

/// Set by a forward that left a signal's disposition at something other
/// than our handler (to let the faulting instruction re-raise the signal
/// with the default action); cleared by [`reinstall`].
static DISPLACED: AtomicBool = AtomicBool::new(false);

/// Every signal blocked on this thread until dropped.
struct BlockAll(libc::sigset_t);

impl BlockAll {
    fn new() -> Self {
        // SAFETY: sigset operations on local values; pthread_sigmask is
        // async-signal safe.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
            BlockAll(old)
        }
    }
}

impl Drop for BlockAll {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// Whether this host has a signal-context layout this module knows: the
/// native machine refuses to exist without it.
pub(crate) fn check_host() -> Result<(), Error> {
    if context::SUPPORTED {
        Ok(())
    } else {
        Err(Error::Machine(format!(
            "native trap delivery is not implemented for {} hosts",
            std::env::consts::ARCH
        )))
    }
}

/// The flags of our handler's disposition (its mask is empty).
/// SA_ONSTACK: a stack overflow can be delivered on the alternate stack.
/// SA_NODEFER: a fault inside a forwarded handler reaches us (and then the
/// default action) instead of being blocked; with the empty mask, it also
/// means the handler runs with the interrupted code's signal mask, which
/// [`exit`] relies on.
const OUR_FLAGS: libc::c_int = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;

fn is_ours(action: &libc::sigaction) -> bool {
    action.sa_sigaction == exit::handler()
}

/// Install the handlers (once per process), remembering the previous ones.
pub(crate) fn install() -> Result<(), Error> {
    check_host()?;
    let mut installed = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    exit::forget_foreign();
    if !*installed {
        exit::init();
        for (slot, &signal) in PREVIOUS.iter().zip(&SIGNALS) {
            slot.with(|previous| {
                // SAFETY: a valid pointer to storage.
                if unsafe { exit::set_our_action(signal, previous) } != 0 {
                    return Err(Error::Machine(format!(
                        "installing the handler of signal {signal}: {}",
                        std::io::Error::last_os_error()
                    )));
                }
                Ok(())
            })?;
        }
        *installed = true;
    }
    drop(installed);
    reinstall_if_displaced();
    Ok(())
}

/// If a forward left a signal at its default action and the process
/// survived (the faulting instruction did not fault again), put our handler
/// back. One relaxed load when nothing happened: cheap enough for every
/// call entry.
#[inline]
pub(crate) fn reinstall_if_displaced() {
    if DISPLACED.load(Ordering::Relaxed) {
        reinstall();
    }
}

#[cold]
fn reinstall() {
    let installed = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if !*installed {
        return;
    }
    DISPLACED.store(false, Ordering::Relaxed);
    for (slot, &signal) in PREVIOUS.iter().zip(&SIGNALS) {
        slot.with(|_| {
            // SAFETY: querying, then (only when the disposition is still the
            // one a forward put there) replacing it with ours.
            unsafe {
                let mut current: libc::sigaction = std::mem::zeroed();
                libc::sigaction(signal, std::ptr::null(), &mut current);
                // Only what `default_action` put there: someone else's
                // handler, installed since, is theirs to manage (they chain
                // to us, or call `handle_signal`).
                if current.sa_sigaction == libc::SIG_DFL {
                    exit::set_our_action(signal, std::ptr::null_mut());
                }
            }
        });
    }
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
    static ALT_STACK: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
    static OWNED_ALT_STACK: std::cell::RefCell<Option<AltStack>> = const { std::cell::RefCell::new(None) };
}

/// The smallest alternate stack our handler is safe on: the kernel's
/// signal frame for this CPU (AT_MINSIGSTKSZ: large with SVE on aarch64 or
/// AVX-512 on x86-64; vector registers on s390x) plus room for the handler.
fn alt_stack_size() -> usize {
    // SAFETY: getauxval has no preconditions; 0 means "not provided".
    let frame = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
    let frame = frame.max(libc::MINSIGSTKSZ);
    (frame + 16 * 1024).max(ALT_STACK_SIZE)
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
    // An existing stack (Rust's std gives every thread one sized from
    // AT_MINSIGSTKSZ) is kept when it fits the kernel's frame.
    // SAFETY: as above.
    let minimum = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
    if current.ss_flags & libc::SS_DISABLE == 0 && current.ss_size >= libc::MINSIGSTKSZ.max(minimum)
    {
        ALT_STACK.with(|c| c.set(Some(false)));
        return Ok(());
    }
    let size = alt_stack_size();
    // SAFETY: an anonymous private mapping, then registering it as this
    // thread's alternate stack.
    unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            size,
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
            ss_size: size,
        };
        if libc::sigaltstack(&stack, std::ptr::null_mut()) != 0 {
            let e = std::io::Error::last_os_error();
            libc::munmap(base, size);
            return Err(Error::Machine(format!("sigaltstack: {e}")));
        }
        OWNED_ALT_STACK.with(|s| *s.borrow_mut() = Some(AltStack { base, len: size }));
    }
    ALT_STACK.with(|c| c.set(Some(true)));
    Ok(())
}

/// The registers a delivery reads and rewrites, per host architecture
/// (Linux signal-context layouts).
#[cfg(target_arch = "x86_64")]
mod context {
    pub(super) const SUPPORTED: bool = true;

    /// The interrupted program counter, as the kernel left it.
    pub(super) unsafe fn pc(uc: *mut libc::ucontext_t) -> u64 {
        // SAFETY: the kernel passed a valid ucontext (caller's contract).
        unsafe { (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] as u64 }
    }

    /// The frame pointer, `rbp`.
    pub(super) fn frame_pointer(uc: *mut libc::c_void, _stack: (u64, u64)) -> Option<u64> {
        // SAFETY: the kernel passed a valid ucontext (caller's contract).
        Some(
            unsafe { (*uc.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RBP as usize] }
                as u64,
        )
    }

    /// Where the call that reached the interrupted pc returns to: the word
    /// `call` pushed at the stack pointer.
    pub(super) fn return_address(uc: *mut libc::c_void, stack: (u64, u64)) -> Option<u64> {
        // SAFETY: as above.
        let sp =
            unsafe { (*uc.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RSP as usize] }
                as u64;
        // SAFETY: a word inside this thread's mapped stack.
        (sp >= stack.0 && sp.checked_add(8)? <= stack.1)
            .then(|| unsafe { (sp as *const u64).read() })
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
    pub(super) const SUPPORTED: bool = true;

    pub(super) unsafe fn pc(uc: *mut libc::ucontext_t) -> u64 {
        // SAFETY: the kernel passed a valid ucontext (caller's contract).
        unsafe { (*uc).uc_mcontext.pc }
    }

    /// The frame pointer, `x29`.
    pub(super) fn frame_pointer(uc: *mut libc::c_void, _stack: (u64, u64)) -> Option<u64> {
        // SAFETY: the kernel passed a valid ucontext (caller's contract).
        Some(unsafe { (*uc.cast::<libc::ucontext_t>()).uc_mcontext.regs[29] })
    }

    /// The link register, `x30`.
    pub(super) fn return_address(uc: *mut libc::c_void, _stack: (u64, u64)) -> Option<u64> {
        // SAFETY: as above.
        Some(unsafe { (*uc.cast::<libc::ucontext_t>()).uc_mcontext.regs[30] })
    }

    /// Resume at `to`: `sp`, `x29` (fp), zero payload registers `x0`, `x1`.
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

#[cfg(target_arch = "riscv64")]
mod context {
    pub(super) const SUPPORTED: bool = true;

    pub(super) unsafe fn pc(uc: *mut libc::ucontext_t) -> u64 {
        // SAFETY: the kernel passed a valid ucontext (caller's contract).
        unsafe { (*uc).uc_mcontext.__gregs[libc::REG_PC] }
    }

    /// The frame pointer, `s0` (`x8`).
    pub(super) fn frame_pointer(uc: *mut libc::c_void, _stack: (u64, u64)) -> Option<u64> {
        // SAFETY: the kernel passed a valid ucontext (caller's contract).
        Some(unsafe { (*uc.cast::<libc::ucontext_t>()).uc_mcontext.__gregs[libc::REG_S0] })
    }

    /// The return-address register, `ra` (`x1`).
    pub(super) fn return_address(uc: *mut libc::c_void, _stack: (u64, u64)) -> Option<u64> {
        // SAFETY: as above.
        Some(unsafe { (*uc.cast::<libc::ucontext_t>()).uc_mcontext.__gregs[1] })
    }

    /// Resume at `to`: `sp` (`x2`), `s0` (fp, `x8`), zero payload registers
    /// `a0`, `a1` (`x10`, `x11`).
    pub(super) unsafe fn redirect(uc: *mut libc::ucontext_t, to: super::Resume) {
        // SAFETY: as above; the kernel restores these registers on return.
        let gregs = unsafe { &mut (*uc).uc_mcontext.__gregs };
        gregs[libc::REG_PC] = to.pc;
        gregs[libc::REG_SP] = to.sp;
        gregs[libc::REG_S0] = to.fp;
        gregs[libc::REG_A0] = 0;
        gregs[libc::REG_A0 + 1] = 0;
    }
}

#[cfg(target_arch = "s390x")]
mod context {
    pub(super) const SUPPORTED: bool = true;

    /// The PSW address. For SIGILL and SIGFPE (program interruptions of the
    /// completing or suppressing kind) it points *after* the instruction;
    /// see [`super::fault_pc`].
    pub(super) unsafe fn pc(uc: *mut libc::ucontext_t) -> u64 {
        // SAFETY: the kernel passed a valid ucontext (caller's contract).
        unsafe { (*uc).uc_mcontext.psw.addr }
    }

    /// The back-chain word at the stack pointer (`r15`): s390x frames have
    /// no frame-pointer register. When the stack pointer has left the stack
    /// (a stack overflow), the fault is the prologue's store of the back
    /// chain, and `IsaSpec::prologue_frame_value` still holds the value.
    pub(super) fn frame_pointer(uc: *mut libc::c_void, stack: (u64, u64)) -> Option<u64> {
        // SAFETY: the kernel passed a valid ucontext (caller's contract).
        let gregs = unsafe { (*uc.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
        let spec = crate::isa::Arch::S390x.spec();
        let sp = gregs[usize::from(spec.stack_pointer().hw)];
        let frame_value = spec
            .prologue_frame_value()
            .map_or(0, |reg| gregs[usize::from(reg.hw)]);
        let in_stack = |a: u64| a >= stack.0 && a.checked_add(8).is_some_and(|end| end <= stack.1);
        if in_stack(sp) {
            // SAFETY: a word inside this thread's mapped stack.
            Some(unsafe { (sp as *const u64).read() })
        } else {
            (sp < stack.0 && in_stack(frame_value)).then_some(frame_value)
        }
    }

    /// The return-address register, `r14`.
    pub(super) fn return_address(uc: *mut libc::c_void, _stack: (u64, u64)) -> Option<u64> {
        // SAFETY: as above.
        Some(unsafe { (*uc.cast::<libc::ucontext_t>()).uc_mcontext.gregs[14] })
    }

    /// Resume at `to`: `r15` (sp; s390x has no frame pointer, the back
    /// chain is at the stack pointer), zero payload registers `r6`, `r7`.
    pub(super) unsafe fn redirect(uc: *mut libc::ucontext_t, to: super::Resume) {
        // SAFETY: as above; the kernel restores these registers on return.
        let m = unsafe { &mut (*uc).uc_mcontext };
        // No frame-pointer register to set: `to.fp` is the back chain's
        // address, which is `to.sp`.
        let _ = to.fp;
        m.psw.addr = to.pc;
        m.gregs[15] = to.sp;
        m.gregs[6] = 0;
        m.gregs[7] = 0;
    }
}

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "s390x"
)))]
mod context {
    // No signal-context layout for this host: `check_host` makes
    // `NativeMachine::new` fail, so no JIT code can run and nothing below
    // is reached.
    pub(super) const SUPPORTED: bool = false;

    pub(super) unsafe fn pc(_uc: *mut libc::ucontext_t) -> u64 {
        0
    }

    pub(super) fn frame_pointer(_uc: *mut libc::c_void, _stack: (u64, u64)) -> Option<u64> {
        None
    }

    pub(super) fn return_address(_uc: *mut libc::c_void, _stack: (u64, u64)) -> Option<u64> {
        None
    }

    pub(super) unsafe fn redirect(_uc: *mut libc::ucontext_t, _to: super::Resume) {}
}

/// Whether the kernel reports `signal` with the pc *after* the faulting
/// instruction, so that returning from the handler does not execute it
/// again: SIGILL and SIGFPE on s390x.
fn reported_after(signal: libc::c_int) -> bool {
    cfg!(target_arch = "s390x") && (signal == libc::SIGILL || signal == libc::SIGFPE)
}

/// The address of the faulting instruction. On s390x a SIGILL or SIGFPE
/// leaves the PSW after the instruction, and the kernel reports the
/// instruction's own address in `si_addr` (PSW minus the instruction
/// length); failing that, the instruction's last byte (`pc - 1`), which is
/// where Cranelift records such traps.
fn fault_pc(signal: libc::c_int, pc: u64, si_addr: u64) -> u64 {
    if !reported_after(signal) {
        return pc;
    }
    if si_addr < pc && pc - si_addr <= 6 {
        si_addr
    } else {
        pc.wrapping_sub(1)
    }
}

/// Handle a signal if it is a synchronous fault of JIT code in the call
/// running on this thread: rewrite `context` to resume at that call's entry
/// trampoline (which returns the trap to [`crate::Module::call`]) and
/// return `true`. Otherwise return `false` and change nothing.
///
/// This is what this crate's own handler runs first. An embedder that owns
/// the process's signal handling (a JVM, a crash reporter, another runtime)
/// creates its machines with
/// [`NativeOptions::signal_handlers(false)`](crate::native::NativeOptions::signal_handlers)
/// and calls this first from its SIGILL, SIGSEGV, SIGBUS and SIGFPE
/// handlers — installed with `SA_SIGINFO` and, so that stack overflows are
/// delivered, `SA_ONSTACK` — returning at once when it answers `true` (the
/// kernel then resumes at the rewritten context) and treating the signal as
/// its own otherwise.
///
/// Asynchronous signals (`si_code <= 0`: `kill`, `tkill`, `sigqueue`) are
/// never JIT faults, whatever code they interrupt. It allocates nothing and
/// takes no locks: safe to call from a signal handler.
///
/// # Safety
/// `info` and `context` must be the `siginfo_t` and `ucontext_t` pointers
/// the kernel passed to a handler of signal `signal` on this thread, and the
/// handler must return to the kernel (not longjmp) right after a `true`.
pub unsafe fn handle_signal(
    signal: libc::c_int,
    info: *const libc::siginfo_t,
    context: *mut libc::c_void,
) -> bool {
    // SAFETY: our caller's contract.
    match unsafe { deliver(signal, info, context) } {
        Some(resume) => {
            // SAFETY: as above.
            unsafe { context::redirect(context.cast(), resume) };
            true
        }
        None => false,
    }
}

/// [`handle_signal`] without the rewrite: where the fault's call resumes,
/// if it is a synchronous fault of JIT code of the call running on this
/// thread (whose services have recorded it).
///
/// # Safety
/// As [`handle_signal`]'s; the caller resumes there (rewriting `context`
/// and returning to the kernel, or as [`exit`] does).
unsafe fn deliver(
    signal: libc::c_int,
    info: *const libc::siginfo_t,
    context: *mut libc::c_void,
) -> Option<Resume> {
    if !context::SUPPORTED || info.is_null() || context.is_null() || !SIGNALS.contains(&signal) {
        return None;
    }
    // SAFETY: the kernel's siginfo (caller's contract).
    let (code, si_addr) = unsafe { ((*info).si_code, (*info).si_addr() as u64) };
    if code <= 0 {
        return None;
    }
    let uc = context.cast::<libc::ucontext_t>();
    // SAFETY: the kernel's ucontext (caller's contract).
    let pc = fault_pc(signal, unsafe { context::pc(uc) }, si_addr);
    let memory = signal == libc::SIGSEGV || signal == libc::SIGBUS;
    let kind = match signal {
        libc::SIGILL => FaultKind::IllegalInstruction,
        libc::SIGFPE => FaultKind::Arithmetic,
        // An instruction fetch: the faulting address is the pc's (s390x
        // reports fault addresses with page granularity). The native machine
        // checks where the call came from before reporting it as such.
        _ if si_addr & !0xfff == pc & !0xfff => FaultKind::InstructionFetch,
        _ => FaultKind::MemoryAccess,
    };
    let signal_fault = SignalFault {
        fault: Fault {
            pc,
            kind,
            address: memory.then_some(si_addr),
            fp: None,
            caller: None,
        },
        frame_pointer: context::frame_pointer,
        return_address: context::return_address,
        context,
    };
    deliver_signal_fault(signal_fault)
}

/// Handle a signal that is not ours as the process would without us: call
/// the previous handler, or apply the default action / ignore it.
fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let Some(index) = SIGNALS.iter().position(|&s| s == signal) else {
        return;
    };
    let slot = &PREVIOUS[index];
    let previous = slot.with(|action| {
        let previous = *action;
        // The kernel would have reset the disposition before calling a
        // one-shot handler.
        if previous.sa_flags & libc::SA_RESETHAND != 0 {
            action.sa_sigaction = libc::SIG_DFL;
            action.sa_flags &= !libc::SA_SIGINFO;
        }
        previous
    });
    // SAFETY: `info` is the kernel's siginfo.
    let asynchronous = unsafe { (*info).si_code } <= 0;
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_IGN && asynchronous {
        return;
    }
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // The default action of all four signals ends the process. (A
        // synchronous fault the kernel finds ignored gets it too.)
        default_action(signal, asynchronous);
        return;
    }
    // SAFETY: the previous handler is what the process had installed; we
    // call it the way its flags say, with the mask the kernel would have
    // applied (its sa_mask, plus the signal unless SA_NODEFER).
    unsafe {
        let mut mask = previous.sa_mask;
        if previous.sa_flags & libc::SA_NODEFER == 0 {
            libc::sigaddset(&mut mask, signal);
        }
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &mask, &mut old);
        if previous.sa_flags & libc::SA_SIGINFO != 0 {
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(handler);
            handler(signal, info, uc);
        } else {
            let handler: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
            handler(signal);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    adopt_changed_disposition(signal, slot);
}

/// After a forwarded handler returned: if it changed the disposition (Rust's
/// SIGSEGV handler resets it to `SIG_DFL` so the faulting instruction
/// re-raises with the default action), that is what the process would now
/// have without us; record it as the previous action and put ours back.
fn adopt_changed_disposition(signal: libc::c_int, slot: &PreviousAction) {
    slot.with(|previous| {
        // SAFETY: querying and setting dispositions with valid pointers.
        unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, std::ptr::null(), &mut current);
            if !is_ours(&current) {
                *previous = current;
                exit::set_our_action(signal, std::ptr::null_mut());
            }
        }
    });
}

/// Terminate the process the way `signal`'s default action would: with the
/// default disposition installed, re-execute the faulting instruction
/// (synchronous faults reported at the instruction) or raise the signal
/// again.
fn default_action(signal: libc::c_int, asynchronous: bool) {
    // SAFETY: installing the default disposition; raising a signal to the
    // calling thread. Both are async-signal safe.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut default.sa_mask);
        libc::sigaction(signal, &default, std::ptr::null_mut());
        // Should the instruction not fault again, or another thread's
        // signal be ignored after all, the next machine or call puts our
        // handler back.
        DISPLACED.store(true, Ordering::Relaxed);
        if asynchronous || reported_after(signal) {
            // SA_NODEFER left the signal unblocked: it is delivered on
            // return from the syscall.
            libc::raise(signal);
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
    // SAFETY: the kernel's siginfo for this handler's signal.
    let ours = unsafe { crate::interrupt::sent_by_this_crate(info) };
    if ours == Some(false) {
        // Someone else's SIGURG, whatever this thread is running.
        forward_interrupt_signal(signal, info, uc.cast());
        return;
    }
    // SAFETY: the kernel passes a valid ucontext.
    let pc = unsafe { context::pc(uc) };
    match deliver_interrupt(pc) {
        InterruptDelivery::Resume(resume) => {
            // SAFETY: as above.
            unsafe { context::redirect(uc, resume) }
        }
        InterruptDelivery::Later => {}
        // One of ours that arrived too late to concern a call: dropped.
        InterruptDelivery::NotOurs if ours == Some(true) => {}
        InterruptDelivery::NotOurs => forward_interrupt_signal(signal, info, uc.cast()),
    }
}

/// Hand a SIGURG that is not an interrupt to the handler installed before
/// ours (nothing to do for `SIG_DFL`, which ignores it, or `SIG_IGN`).
fn forward_interrupt_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    uc: *mut libc::c_void,
) {
    let Some(Ok(previous)) = PREVIOUS_INTERRUPT.get() else {
        return;
    };
    if previous.sa_sigaction == libc::SIG_DFL || previous.sa_sigaction == libc::SIG_IGN {
        return;
    }
    // SAFETY: the previous action is what the process had installed; its
    // handler is called the way its flags say.
    unsafe {
        if previous.sa_flags & libc::SA_SIGINFO != 0 {
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(previous.sa_sigaction);
            handler(signal, info, uc);
        } else {
            let handler: extern "C" fn(libc::c_int) = std::mem::transmute(previous.sa_sigaction);
            handler(signal);
        }
    }
}
