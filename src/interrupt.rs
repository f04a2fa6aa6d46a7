//! Stopping a running call from another thread.
//!
//! A [`crate::Module`] hands out [`InterruptHandle`]s (`Send + Sync +
//! Clone`). [`InterruptHandle::interrupt`] makes every call into that module
//! that is in progress when it is called end with
//! [`crate::CallError::Interrupted`]; calls that start after it returns are
//! not affected, and the module stays usable. The running code needs no
//! cooperation (a loop without calls stops too):
//!
//! - JIT code is stopped where it is, like a trap: its frames are discarded
//!   and the call's entry returns.
//! - A host function is never stopped: when it returns to JIT code, the call
//!   ends as interrupted instead of continuing (a call it makes into the
//!   module after the interrupt runs normally).
//!
//! Natively the thread running the call gets [`INTERRUPT_SIGNAL`] (SIGURG);
//! when it arrives in JIT code, the handler redirects it to the entry
//! trampoline's handler, as the trap handler does. Arriving anywhere else
//! (the host function, the throw service, the entry trampoline before it
//! has recorded its handler), it is resent by a background thread (started
//! at the first such interrupt), first after [`RESEND_INTERVAL`], then at
//! doubling intervals up to [`MAX_RESEND_INTERVAL`], until the call has been
//! redirected or has ended. [`InterruptHandle::interrupt`] itself does not
//! wait. Host code that runs while its call is interrupted should expect
//! `EINTR` from system calls the `SA_RESTART` flag does not restart; a
//! thread that blocks SIGURG cannot be interrupted in JIT code.
//! Only the innermost call on a thread is signalled: an interrupted call
//! that is running a host function which is running another module's code
//! stops when that host function returns.
//!
//! The emulator crate checks for an interrupt at each basic block.

use std::cell::Cell;
use std::sync::atomic::Ordering::{self, Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, compiler_fence};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::time::Duration;

/// The signal that interrupts a native call. SIGURG: its default action is
/// to ignore it, so a late or stray delivery is harmless, and outside Go
/// runtimes (which use it to preempt goroutines) nothing else sends it but
/// sockets with out-of-band data and an owner set by `F_SETOWN`. This crate
/// sends it with `pthread_sigqueue` and a value of its own (on glibc), so a
/// SIGURG it did not send always goes to the handler installed before this
/// crate's, and one it sent never does (a late one is dropped). Where
/// `pthread_sigqueue` is missing (other C libraries) a SIGURG that arrives
/// on a thread with no interrupted call goes to the previous handler.
pub const INTERRUPT_SIGNAL: libc::c_int = libc::SIGURG;

/// How long [`InterruptHandle::interrupt`] first waits before resending the
/// signal to a thread that received it where it could not take effect.
pub const RESEND_INTERVAL: Duration = Duration::from_micros(50);

/// The longest wait between two resends.
pub const MAX_RESEND_INTERVAL: Duration = Duration::from_millis(10);

/// The interrupt state of one module, shared with its handles: the number
/// of interrupts so far.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    epoch: AtomicU64,
}

/// Interrupts the calls of one [`crate::Module`]; from
/// [`crate::Module::interrupt_handle`].
#[derive(Clone, Debug, Default)]
pub struct InterruptHandle {
    shared: Arc<Shared>,
}

impl InterruptHandle {
    /// A handle for a new module.
    pub(crate) fn new() -> InterruptHandle {
        InterruptHandle::default()
    }

    /// The interrupt state of a call starting now.
    #[inline]
    pub(crate) fn begin(&self) -> CallInterrupt<'_> {
        CallInterrupt {
            shared: &self.shared,
            start: self.shared.epoch.load(SeqCst),
        }
    }

    /// Make every call of the module in progress now end with
    /// [`crate::CallError::Interrupted`] (see the [module docs](self)).
    /// Returns at once; the calls end as soon as they can. Where the kernel
    /// has `membarrier`, this runs a memory barrier on every CPU running a
    /// thread of the process (so that calls need none when they start): a
    /// few microseconds, meant for the occasional interrupt, not a loop.
    pub fn interrupt(&self) {
        let target = self.shared.epoch.fetch_add(1, SeqCst) + 1;
        // The other half of the fence `enter_native` leaves out: every
        // thread running a call has either published its slot by now or
        // will read the new epoch. Should the fence fail, a resend looks
        // at the slots again once any store has long become visible.
        let fenced = !ASYMMETRIC_FENCES.load(SeqCst) || heavy_fence();
        if signal_threads(Arc::as_ptr(&self.shared).cast_mut(), target) || !fenced {
            resend(self.shared.clone(), target);
        }
    }
}

/// What one call observes of its module's interrupts: whether any arrived
/// since the call started.
#[derive(Clone, Copy, Debug)]
pub struct CallInterrupt<'a> {
    shared: &'a Shared,
    start: u64,
}

impl CallInterrupt<'_> {
    /// Whether the call has been interrupted. One atomic load: safe in a
    /// signal handler.
    #[inline(always)]
    pub fn is_interrupted(&self) -> bool {
        self.shared.epoch.load(SeqCst) != self.start
    }

    #[inline]
    fn shared_ptr(&self) -> *mut Shared {
        (self.shared as *const Shared).cast_mut()
    }
}

/// A thread that has run a native call: which module's call is innermost on
/// it, and up to which interrupt its signal handler has seen.
#[derive(Debug)]
struct ThreadSlot {
    thread: libc::pthread_t,
    /// The [`Shared`] of the innermost call's module (null: none, or a call
    /// that cannot be interrupted).
    innermost: AtomicPtr<Shared>,
    /// The module epoch the signal handler last saw while the interrupt took
    /// effect or did not concern the innermost call (0 since that call
    /// started).
    acked: AtomicU64,
}

/// Every thread with a [`ThreadSlot`].
static THREADS: Mutex<Vec<Arc<ThreadSlot>>> = Mutex::new(Vec::new());

/// Removes the thread's slot from [`THREADS`] at thread exit, after
/// telling the code that registered it to forget its handles
/// (`forget_handles`, from [`this_thread`]'s caller).
struct Registration {
    slot: Arc<ThreadSlot>,
    forget_handles: fn(),
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = SLOT.try_with(|s| s.set(std::ptr::null()));
        // A handle kept past this point (a call made later, from another
        // thread-local destructor) would reach the slot freed below.
        (self.forget_handles)();
        THREADS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|s| !Arc::ptr_eq(s, &self.slot));
    }
}

thread_local! {
    static REGISTRATION: std::cell::RefCell<Option<Registration>> =
        const { std::cell::RefCell::new(None) };
    /// This thread's slot (owned by [`REGISTRATION`]), or null: a plain
    /// `Cell` so that the signal handler and each call reach it with one load.
    static SLOT: Cell<*const ThreadSlot> = const { Cell::new(std::ptr::null()) };
}

/// Signal every thread whose innermost call belongs to `shared` and has not
/// acknowledged interrupt `target`; whether there was one.
fn signal_threads(shared: *mut Shared, target: u64) -> bool {
    let threads = THREADS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut waiting = false;
    for slot in threads.iter() {
        if slot.innermost.load(SeqCst) == shared && slot.acked.load(SeqCst) < target {
            waiting = true;
            // SAFETY: the thread is alive: it removes its slot (under this
            // lock) before it exits.
            unsafe { send_signal(slot.thread) };
        }
    }
    waiting
}

/// The value this crate's interrupt signals carry: the address of a static,
/// unique in the process.
fn signal_marker() -> *mut libc::c_void {
    static MARKER: u8 = 0;
    (&MARKER as *const u8).cast_mut().cast()
}

/// Send the interrupt signal to `thread`, marked as this crate's.
///
/// # Safety
///
/// `thread` is a live thread of this process.
#[cfg(target_env = "gnu")]
unsafe fn send_signal(thread: libc::pthread_t) {
    let value = libc::sigval {
        sival_ptr: signal_marker(),
    };
    // SAFETY: our caller's contract.
    unsafe { libc::pthread_sigqueue(thread, INTERRUPT_SIGNAL, value) };
}

/// Send the interrupt signal to `thread` (unmarked: this C library has no
/// `pthread_sigqueue`).
///
/// # Safety
///
/// `thread` is a live thread of this process.
#[cfg(not(target_env = "gnu"))]
unsafe fn send_signal(thread: libc::pthread_t) {
    // SAFETY: our caller's contract.
    unsafe { libc::pthread_kill(thread, INTERRUPT_SIGNAL) };
}

/// Whether this process's interrupt machinery sent the signal `info`
/// describes: `Some(true)` or `Some(false)`, or `None` where signals are
/// sent unmarked and it cannot tell. Async-signal-safe.
///
/// # Safety
///
/// `info` is the `siginfo_t` the kernel passed to a handler of
/// [`INTERRUPT_SIGNAL`].
pub(crate) unsafe fn sent_by_this_crate(info: *const libc::siginfo_t) -> Option<bool> {
    if !cfg!(target_env = "gnu") {
        return None;
    }
    if info.is_null() {
        return Some(false);
    }
    // SAFETY: the kernel's siginfo (caller's contract); the union fields
    // read are those of a queued signal, checked first.
    unsafe {
        let queued = (*info).si_code == libc::SI_QUEUE;
        Some(
            queued
                && (*info).si_pid() == libc::getpid()
                && (*info).si_value().sival_ptr == signal_marker(),
        )
    }
}

/// Interrupts whose signal still has to reach a thread where it takes
/// effect, and whether the resending thread runs.
struct Resends {
    pending: Vec<(Arc<Shared>, u64)>,
    started: bool,
}

static RESENDS: Mutex<Resends> = Mutex::new(Resends {
    pending: Vec::new(),
    started: false,
});
static RESEND_WAKE: std::sync::Condvar = std::sync::Condvar::new();

/// Keep signalling for interrupt `target` of `shared` from the resending
/// thread (started here the first time).
fn resend(shared: Arc<Shared>, target: u64) {
    let mut resends = RESENDS.lock().unwrap_or_else(PoisonError::into_inner);
    resends.pending.push((shared, target));
    if !resends.started {
        let spawned = std::thread::Builder::new()
            .name("cranelift-exn-interrupts".into())
            .spawn(resend_loop);
        // Without the thread, interrupts that miss JIT code still take
        // effect when a host function returns.
        resends.started = spawned.is_ok();
    }
    RESEND_WAKE.notify_one();
}

fn resend_loop() {
    let mut wait = RESEND_INTERVAL;
    let mut resends = RESENDS.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if resends.pending.is_empty() {
            wait = RESEND_INTERVAL;
            resends = RESEND_WAKE
                .wait(resends)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        drop(resends);
        std::thread::sleep(wait);
        wait = (wait * 2).min(MAX_RESEND_INTERVAL);
        resends = RESENDS.lock().unwrap_or_else(PoisonError::into_inner);
        resends
            .pending
            .retain(|(shared, target)| signal_threads(Arc::as_ptr(shared).cast_mut(), *target));
    }
}

/// The environment variable that, set to anything but `0` when the first
/// native machine is made, turns the `membarrier` scheme off for the
/// process: every native call then pays a sequentially consistent store
/// (a locked instruction on x86-64) and [`InterruptHandle::interrupt`]
/// sends no inter-processor interrupts. For processes that cannot afford
/// those on every CPU they run on, and for testing the fallback.
pub const NO_MEMBARRIER_VARIABLE: &str = "CRANELIFT_EXN_NO_MEMBARRIER";

/// Whether native calls in this process publish their interrupt state
/// without a fence, [`InterruptHandle::interrupt`] running `membarrier`
/// instead: decided when the first native machine is made (the kernel's
/// support, and [`NO_MEMBARRIER_VARIABLE`]); `false` before.
pub fn calls_use_membarrier() -> bool {
    ASYMMETRIC_FENCES.load(SeqCst)
}

/// Whether native calls publish their slot without a store-load fence,
/// relying on [`InterruptHandle::interrupt`] to run [`heavy_fence`]
/// (`membarrier`) instead; set once, by [`prepare_native`], before any
/// native call can start.
static ASYMMETRIC_FENCES: AtomicBool = AtomicBool::new(false);

/// Once per process, before the first native machine exists: whether the
/// kernel offers `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (and
/// [`NO_MEMBARRIER_VARIABLE`] does not turn it off). With it a call's
/// entry costs a plain store where it would otherwise cost a sequentially
/// consistent one (a locked instruction on x86-64), and the rare interrupt
/// pays for the fence instead.
pub(crate) fn prepare_native() {
    static PREPARED: Once = Once::new();
    PREPARED.call_once(|| {
        let opted_out =
            std::env::var_os(NO_MEMBARRIER_VARIABLE).is_some_and(|v| !v.is_empty() && v != "0");
        // SAFETY: membarrier with a command and no flags; registering only
        // affects this process.
        let available = !opted_out
            && unsafe {
                let commands = libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0);
                commands > 0
                    && commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED != 0
                    && libc::syscall(
                        libc::SYS_membarrier,
                        MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                        0,
                    ) == 0
            };
        ASYMMETRIC_FENCES.store(available, SeqCst);
    });
}

// membarrier(2) commands (linux/membarrier.h).
const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// A full memory barrier on every thread of this process that is running
/// now (see [`prepare_native`]); whether it took place.
#[cold]
fn heavy_fence() -> bool {
    // SAFETY: registered in `prepare_native`; no pointers involved.
    unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0) == 0 }
}

/// This thread's slot, registering the thread on first use (with
/// `forget_handles`, see [`this_thread`]); null while the thread's locals
/// are being destroyed. Not for signal handlers.
#[inline]
fn thread_slot(forget_handles: fn()) -> *const ThreadSlot {
    let slot = SLOT.with(Cell::get);
    if !slot.is_null() {
        return slot;
    }
    register_thread(forget_handles)
}

#[cold]
fn register_thread(forget_handles: fn()) -> *const ThreadSlot {
    REGISTRATION
        .try_with(|r| {
            let slot = Arc::new(ThreadSlot {
                // SAFETY: pthread_self has no preconditions.
                thread: unsafe { libc::pthread_self() },
                innermost: AtomicPtr::new(std::ptr::null_mut()),
                acked: AtomicU64::new(0),
            });
            THREADS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(slot.clone());
            let ptr = Arc::as_ptr(&slot);
            *r.borrow_mut() = Some(Registration {
                slot,
                forget_handles,
            });
            SLOT.with(|s| s.set(ptr));
            ptr
        })
        .unwrap_or(std::ptr::null())
}

/// This thread's interrupt slot, registering the thread on first use: what
/// [`enter_native`] and [`leave_native`] take. Valid until the thread's
/// registration is destroyed, which first calls the `forget_handles` given
/// when it registered, so that its caller can drop the copies it keeps.
/// Once the thread's locals are being destroyed, a detached slot that no
/// interrupt looks at: a call made then runs, but cannot be interrupted.
/// Not for signal handlers.
pub(crate) fn this_thread(forget_handles: fn()) -> ThreadHandle {
    let slot = thread_slot(forget_handles);
    ThreadHandle {
        slot: if slot.is_null() { &DETACHED } else { slot },
    }
}

/// The slot of calls made after their thread's registration is gone: in no
/// thread list, so never signalled (its fields are written, never read).
static DETACHED: ThreadSlot = ThreadSlot {
    thread: 0,
    innermost: AtomicPtr::new(std::ptr::null_mut()),
    acked: AtomicU64::new(0),
};

/// A thread's [`ThreadSlot`], from [`this_thread`]: valid on that thread
/// until its registration is destroyed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThreadHandle {
    slot: *const ThreadSlot,
}

/// A native call observing `interrupt` starts on `thread` (this thread's
/// handle). Returns whether the call was interrupted before it could be
/// signalled: then it must not run.
#[inline]
pub(crate) fn enter_native(thread: ThreadHandle, interrupt: Option<&CallInterrupt<'_>>) -> bool {
    let Some(interrupt) = interrupt else {
        set_innermost(thread, std::ptr::null_mut(), Ordering::Release);
        return false;
    };
    // Publishing the slot and then reading the epoch, against `interrupt`'s
    // increment and then read of the slots: an interrupt either sees this
    // call (and signals the thread) or is seen here. That needs a full
    // fence between the store and the load on one side or the other: the
    // interrupter's `membarrier` where the kernel has it, else a
    // sequentially consistent store and load here.
    if ASYMMETRIC_FENCES.load(Relaxed) {
        set_innermost(thread, interrupt.shared_ptr(), Relaxed);
        compiler_fence(SeqCst);
        interrupt.shared.epoch.load(Relaxed) != interrupt.start
    } else {
        set_innermost(thread, interrupt.shared_ptr(), SeqCst);
        interrupt.is_interrupted()
    }
}

/// The native call entered with [`enter_native`] on `thread` ended; `outer`
/// is the call it was nested in, if any. (An interrupt that still sees the
/// old value only sends a signal that does not concern this thread's call.)
#[inline]
pub(crate) fn leave_native(thread: ThreadHandle, outer: Option<&CallInterrupt<'_>>) {
    let shared = outer.map_or(std::ptr::null_mut(), CallInterrupt::shared_ptr);
    set_innermost(thread, shared, Ordering::Release);
}

#[inline]
fn set_innermost(thread: ThreadHandle, shared: *mut Shared, order: Ordering) {
    // SAFETY: `thread` comes from `this_thread` on this thread, and its
    // registration (which owns the slot) still exists: its destructor makes
    // the holder forget the handle first. Or it is `DETACHED`.
    let slot = unsafe { &*thread.slot };
    slot.acked.store(0, Ordering::Relaxed);
    slot.innermost.store(shared, order);
}

/// From the interrupt signal handler: the interrupt that `interrupt`'s call
/// saw has taken effect (or does not concern it), so
/// [`InterruptHandle::interrupt`] stops resending. Async-signal-safe.
pub(crate) fn acknowledge(interrupt: &CallInterrupt<'_>) {
    let epoch = interrupt.shared.epoch.load(SeqCst);
    if let Ok(slot) = SLOT.try_with(Cell::get)
        // SAFETY: as in `set_innermost`.
        && let Some(slot) = unsafe { slot.as_ref() }
    {
        slot.acked.store(epoch, SeqCst);
    }
}
